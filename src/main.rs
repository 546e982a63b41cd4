use clap::Parser;

fn main() {
    let cli = faultline::cli::Cli::parse();
    let code = faultline::commands::main(cli);
    std::process::exit(code);
}
