# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_faultline_global_optspecs
    string join \n state-dir= color= h/help V/version
end

function __fish_faultline_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_faultline_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_faultline_using_subcommand
    set -l cmd (__fish_faultline_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c faultline -n "__fish_faultline_needs_command" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_needs_command" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_needs_command" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_needs_command" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "run" -d 'Run experiments: steady state, faults, abort conditions, rollback, report'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "validate" -d 'Check experiment files; one line per file, exit 0 only when all are valid'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "plan" -d 'Dry run: print every phase and the exact operations each fault would perform, and run every preflight check. Touches nothing'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "calendar" -d 'Write an iCalendar (.ics) file of the experiments\' upcoming schedule windows, for a team\'s shared calendar'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "export" -d 'Write the experiment in another engine\'s format: Kubernetes manifests for Chaos Mesh. What has no equivalent is listed on stderr and in the output; `--strict` makes that an error'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "status" -d 'List faults still active on this host from any run; exit 1 when any is pending'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "recover" -d 'Undo every pending fault (of one run, or all); safe to run twice'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "stop" -d 'Stop running experiments from any terminal: they roll back and end as ABORTED ("stopped by USER via faultline stop")'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "halt" -d 'The emergency stop: stop every running experiment and refuse new ones (exit 69) until `faultline halt --clear`'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "report" -d 'Render a report again from a run\'s JSON journal'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "history" -d 'Summarize many runs\' journals per experiment: verdicts over time, time to detect and to recover, probe trends and the resilience score'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "init" -d 'Write a commented starting experiment, from flags or (on a terminal, without flags) by asking'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "targets" -d 'List what an experiment can target on this host, with the selector to paste: processes, listening ports, interfaces and namespaces, cgroups, systemd units, containers. Reads only'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "schema" -d 'Print the JSON Schema of the experiment format (for editors)'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "man" -d 'Print the man page (roff), or write one page per command into a directory'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "watchdog" -d 'Internal: the watchdog process a run starts (not for direct use)'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "stress-worker" -d 'Internal: a built-in stressor worker process (not for direct use)'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l journal -d 'Write the run\'s JSON journal here (default: ./faultline-RUNID.json; only with a single experiment)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l junit -d 'Write JUnit XML here (for CI): one test suite per experiment' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l markdown -d 'Write a Markdown report here (only with a single experiment)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l events -d 'Stream events as JSON lines to a file, or `-` for standard output' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l rollback-strategy -d 'Chaos Toolkit: when to run rollbacks (faultline\'s own faults are always undone)' -r -f -a "default\t''
always\t''
never\t''
deviated\t''"
complete -c faultline -n "__fish_faultline_using_subcommand run" -l hypothesis-strategy -d 'Chaos Toolkit: when to check the steady-state hypothesis' -r -f -a "default\t''
before-method-only\t''
after-method-only\t''
during-method-only\t''
continuously\t''"
complete -c faultline -n "__fish_faultline_using_subcommand run" -l hypothesis-frequency -d 'Chaos Toolkit: seconds between checks with `--hypothesis-strategy continuously`' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l var -d 'Set a variable declared under `vars:` (a Chaos Toolkit configuration value for a Chaos Toolkit file); repeatable, later ones win' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l var-file -d 'Read variable values from a YAML file (`name: value` lines) or a `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with `configuration`/`secrets`, or `.env`' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l journal-format -d 'Write the journal in Chaos Toolkit\'s format instead of faultline\'s' -r -f -a "faultline\t''
chaostoolkit\t''"
complete -c faultline -n "__fish_faultline_using_subcommand run" -l notify -d 'Also POST JSON notifications to this webhook (repeatable): about to start, fault injected, aborted, finished' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand run" -l no-journal -d 'Do not write a journal file'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s y -l yes -d 'Do not ask for confirmation before injecting on a terminal'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s q -l quiet -d 'Only print the verdict line (and errors)'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l chaostoolkit -d 'Read the file as a Chaos Toolkit experiment (default: detected from its keys)'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l fail-fast -d 'With several experiments, do not start the next one after one that did not hold. Chaos Toolkit: also stop at the first deviation with `continuously`'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l ignore-controls -d 'Chaos Toolkit: run even though the file has controls that may guard an activity (a prompt, a safeguard); faultline cannot run controls'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l outside-window -d 'Run even outside the experiment\'s `schedule` window (or when the run could outlast it)'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l dry-run -d 'Same as `faultline plan FILE`'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l format -d 'Output format' -r -f -a "text\t''
json\t''
github\t'GitHub Actions annotations (`::error file=...,line=...::message`)'
gitlab\t'GitLab code quality report (JSON), for `artifacts:reports:codequality`'"
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l var -d 'Set a variable declared under `vars:` (a Chaos Toolkit configuration value for a Chaos Toolkit file); repeatable, later ones win' -r
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l var-file -d 'Read variable values from a YAML file (`name: value` lines) or a `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with `configuration`/`secrets`, or `.env`' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand validate" -l chaostoolkit -d 'Read files as Chaos Toolkit experiments (default: detected from their keys)'
complete -c faultline -n "__fish_faultline_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand validate" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l format -r -f -a "text\t''
json\t''"
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l var -d 'Set a variable declared under `vars:` (a Chaos Toolkit configuration value for a Chaos Toolkit file); repeatable, later ones win' -r
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l var-file -d 'Read variable values from a YAML file (`name: value` lines) or a `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with `configuration`/`secrets`, or `.env`' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand plan" -l chaostoolkit -d 'Read the file as a Chaos Toolkit experiment'
complete -c faultline -n "__fish_faultline_using_subcommand plan" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand plan" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -s o -l output -d 'Write the calendar here instead of stdout' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -l days -d 'How many days ahead (1 to 366)' -r
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -l var -d 'Set a variable declared under `vars:` (a Chaos Toolkit configuration value for a Chaos Toolkit file); repeatable, later ones win' -r
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -l var-file -d 'Read variable values from a YAML file (`name: value` lines) or a `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with `configuration`/`secrets`, or `.env`' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand calendar" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand export" -l to -d 'The format to write' -r -f -a "chaos-mesh\t'Kubernetes manifests for Chaos Mesh (a Workflow, or a Schedule)'"
complete -c faultline -n "__fish_faultline_using_subcommand export" -s o -l output -d 'A directory to write into (one file named after the experiment), or `-` for standard output (the default)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand export" -l namespace -d 'Kubernetes namespace of the manifests (and of pods named by `container:`)' -r
complete -c faultline -n "__fish_faultline_using_subcommand export" -l chaosd-address -d 'chaosd address for host faults (PhysicalMachineChaos), repeatable (default: http://THIS-HOST:31767)' -r
complete -c faultline -n "__fish_faultline_using_subcommand export" -l var -d 'Set a variable declared under `vars:` (a Chaos Toolkit configuration value for a Chaos Toolkit file); repeatable, later ones win' -r
complete -c faultline -n "__fish_faultline_using_subcommand export" -l var-file -d 'Read variable values from a YAML file (`name: value` lines) or a `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with `configuration`/`secrets`, or `.env`' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand export" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand export" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand export" -l strict -d 'Fail (exit 64, nothing written) when any part of the experiment has no equivalent'
complete -c faultline -n "__fish_faultline_using_subcommand export" -l chaostoolkit -d 'Read the file as a Chaos Toolkit experiment'
complete -c faultline -n "__fish_faultline_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand export" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand status" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand status" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand status" -l json -d 'JSON output'
complete -c faultline -n "__fish_faultline_using_subcommand status" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand status" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand recover" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand recover" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand recover" -l force -d 'Also roll back runs whose runner is still alive'
complete -c faultline -n "__fish_faultline_using_subcommand recover" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand recover" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l reason -d 'Why, for the report' -r
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l timeout -d 'Give up waiting after this many seconds (exit 69)' -r
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l all -d 'Stop every running experiment'
complete -c faultline -n "__fish_faultline_using_subcommand stop" -l no-wait -d 'Return at once instead of waiting for the runs to roll back'
complete -c faultline -n "__fish_faultline_using_subcommand stop" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand stop" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l reason -d 'Why, shown to everyone whose run it stops or refuses' -r
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l timeout -d 'Give up waiting after this many seconds (exit 69)' -r
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l clear -d 'Clear the switch: experiments may start again'
complete -c faultline -n "__fish_faultline_using_subcommand halt" -l no-wait -d 'Return at once instead of waiting for the runs to roll back'
complete -c faultline -n "__fish_faultline_using_subcommand halt" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand halt" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand report" -l format -r -f -a "table\t''
markdown\t''
junit\t''
json\t''
html\t'One self-contained page with plots (no scripts, no external assets)'"
complete -c faultline -n "__fish_faultline_using_subcommand report" -s o -l output -d 'Write to this file instead of standard output' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand report" -l kb -d 'File the run as a Markdown knowledge-base entry under DIR (DIR/EXPERIMENT/RUN.md) and update DIR/index.md' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand report" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand report" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand report" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand history" -l format -r -f -a "table\t''
json\t''
markdown\t''
html\t'One self-contained page with trend plots'"
complete -c faultline -n "__fish_faultline_using_subcommand history" -s o -l output -d 'Write to this file instead of standard output' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand history" -l kb -d 'Also rebuild DIR/index.md of a knowledge base (`report --kb DIR`) with each experiment\'s score, times and verdicts from these journals' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand history" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand history" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand history" -s r -l recursive -d 'Also search the directories\' subdirectories'
complete -c faultline -n "__fish_faultline_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand history" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand init" -l probe -d 'What the steady state checks: http://HOST:PORT/PATH, https://... or tcp://HOST:PORT (repeatable)' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l fault -d 'The fault kind (process_kill, network, cpu_limit, ...)' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l target -d 'The fault\'s process target as SELECTOR=VALUE: name=nginx, pid=1234, pidfile=PATH, cmdline=REGEX, cgroup=PATH, systemd_unit=UNIT' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l interface -d 'For network and bandwidth: the interface' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l netns -d 'For network faults: the network namespace' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l path -d 'For disk_fill and file_corrupt: the path (file_corrupt: a glob too)' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l device -d 'For io_limit: the block device (MAJOR:MINOR or /dev/NAME)' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l duration -d 'How long the fault lasts' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -l title -d 'The experiment\'s title' -r
complete -c faultline -n "__fish_faultline_using_subcommand init" -s o -l output -d 'Write to FILE (never over an existing one without --force) instead of stdout' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand init" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand init" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand init" -l force -d 'Overwrite FILE'
complete -c faultline -n "__fish_faultline_using_subcommand init" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand init" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand targets" -l filter -d 'Only rows whose name (or command, port, path) contains TEXT' -r
complete -c faultline -n "__fish_faultline_using_subcommand targets" -l format -r -f -a "table\t''
json\t''"
complete -c faultline -n "__fish_faultline_using_subcommand targets" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand targets" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand targets" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand targets" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand schema" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand schema" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand schema" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand schema" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand completions" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand completions" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand completions" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand completions" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand man" -l dir -d 'Write faultline.1 and faultline-COMMAND.1 pages into DIR instead' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand man" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand man" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand man" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand man" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -l run-id -r
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -l ready-fd -d 'Inherited pipe on which the watchdog says it is watching' -r
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand watchdog" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand stress-worker" -l state-dir -d 'Where undo records and locks live (default: /run/faultline as root, else $XDG_RUNTIME_DIR/faultline)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand stress-worker" -l color -d 'When to use colours (NO_COLOR is respected with `auto`)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c faultline -n "__fish_faultline_using_subcommand stress-worker" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand stress-worker" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "run" -d 'Run experiments: steady state, faults, abort conditions, rollback, report'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "validate" -d 'Check experiment files; one line per file, exit 0 only when all are valid'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "plan" -d 'Dry run: print every phase and the exact operations each fault would perform, and run every preflight check. Touches nothing'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "calendar" -d 'Write an iCalendar (.ics) file of the experiments\' upcoming schedule windows, for a team\'s shared calendar'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "export" -d 'Write the experiment in another engine\'s format: Kubernetes manifests for Chaos Mesh. What has no equivalent is listed on stderr and in the output; `--strict` makes that an error'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "status" -d 'List faults still active on this host from any run; exit 1 when any is pending'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "recover" -d 'Undo every pending fault (of one run, or all); safe to run twice'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "stop" -d 'Stop running experiments from any terminal: they roll back and end as ABORTED ("stopped by USER via faultline stop")'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "halt" -d 'The emergency stop: stop every running experiment and refuse new ones (exit 69) until `faultline halt --clear`'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "report" -d 'Render a report again from a run\'s JSON journal'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "history" -d 'Summarize many runs\' journals per experiment: verdicts over time, time to detect and to recover, probe trends and the resilience score'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "init" -d 'Write a commented starting experiment, from flags or (on a terminal, without flags) by asking'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "targets" -d 'List what an experiment can target on this host, with the selector to paste: processes, listening ports, interfaces and namespaces, cgroups, systemd units, containers. Reads only'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "schema" -d 'Print the JSON Schema of the experiment format (for editors)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "completions" -d 'Print shell completions'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "man" -d 'Print the man page (roff), or write one page per command into a directory'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "watchdog" -d 'Internal: the watchdog process a run starts (not for direct use)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "stress-worker" -d 'Internal: a built-in stressor worker process (not for direct use)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate plan calendar export status recover stop halt report history init targets schema completions man watchdog stress-worker help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
