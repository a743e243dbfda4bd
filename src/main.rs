//! mcp-proxy-server: many MCP servers served as one.
//!
//! `main` reads the settings, starts logging, loads the server config and hands over to the mode asked
//! for. ARCHITECTURE.md maps the threads and channels; the dispatcher lives in `hub`.

mod backend;
mod config;
mod frontend;
mod hub;
mod jsonrpc;
mod lines;
mod list_tools;
mod logging;
mod settings;
mod signals;

use hub::{Event, Hub, HubSettings};
use settings::{Mode, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match Settings::from_process() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mcp-proxy-server: {e}");
            return ExitCode::from(2);
        }
    };
    match settings.mode {
        Mode::Help => {
            print!("{}", settings::USAGE);
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("mcp-proxy-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::Stdio | Mode::ListTools => {}
    }
    logging::init(&settings.log_filter);
    for warning in &settings.warnings {
        log::warn!("{warning}");
    }
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let config = config::load(&settings.config_path)?;
    for problem in &config.problems {
        log::error!("{problem} (this server is skipped)");
    }
    log::info!("{}: {} servers", settings.config_path.display(), config.servers.len());
    let (events, inbox) = crossbeam_channel::unbounded::<Event>();
    signals::install(events.clone())?;
    let hub_settings = HubSettings {
        separator: settings.separator.clone(),
        request_timeout: settings.request_timeout,
        startup_timeout: settings.startup_timeout,
        exit_when_no_clients: true,
    };
    let hub = Hub::new(hub_settings, config.servers, events.clone());
    match settings.mode {
        Mode::ListTools => list_tools::run(hub, events, inbox, settings.startup_timeout),
        _ => {
            let stdout = frontend::stdio::serve(events)?;
            hub.run(inbox);
            // The dispatcher has dropped the client's outbox; wait for the last replies to be written.
            let _ = stdout.join();
            Ok(())
        }
    }
}
