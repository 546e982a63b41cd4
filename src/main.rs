use clap::Parser;

fn main() {
    // Usage errors exit 64 (like an invalid experiment), not clap's 2, which
    // means "aborted" here; --help and --version still exit 0.
    let cli = faultline::cli::Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() {
            faultline::exit::INVALID
        } else {
            faultline::exit::HELD
        })
    });
    let code = faultline::commands::main(cli);
    std::process::exit(code);
}
