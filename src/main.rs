//! The `ringstore` binary: parse arguments, load configuration, then serve
//! or check the data directory.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args = ringstore::config::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Fail-stop: a panic is a broken invariant (STYLE.md). A core that died
    // would leave its SO_REUSEPORT socket taking connections nobody serves,
    // so the whole process stops and recovery happens at the next start.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("ringstore: internal error (panic); stopping the process");
        std::process::abort();
    }));
    let config = match ringstore::config::Config::resolve(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ringstore: {error}");
            // `check` keeps 1 for "damage found" (see `check::main`).
            return if matches!(args.command, Some(ringstore::config::Command::Check)) {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            };
        }
    };
    match args.command {
        None | Some(ringstore::config::Command::Serve) => {
            match ringstore::server::runtime::run(&config) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ringstore: {error}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(ringstore::config::Command::Check) => ringstore::check::main(&config.data_dir),
    }
}
