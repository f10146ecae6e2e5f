//! The `computer-use-server` binary: load config, open the store, serve, wait for SIGINT or
//! SIGTERM, shut down cleanly.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use computer_use_server::app::App;
use computer_use_server::config::{Config, ConfigError};
use computer_use_server::http::ServerHandle;
use computer_use_server::util;
use computer_use_server::util::signals::ShutdownSignals;

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Help(text)) => {
            print!("{text}");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    config.check_exposure()?;
    let signals = ShutdownSignals::install()?;
    util::logger::init(util::logger::parse_level(
        &std::env::var("RUST_LOG").unwrap_or_default(),
    ));
    let app = App::build(config.clone())?;
    let addr = (config.http.host.as_str(), config.http.port);
    let listener = TcpListener::bind(addr)
        .map_err(|err| format!("cannot listen on {}:{}: {err}", addr.0, addr.1))?;
    let server = app.serve(listener)?;
    log::info!(
        "listening on http://{} ({} store)",
        server.addr(),
        app.store.backend()
    );
    let signal = signals.wait();
    let grace = config.session.shutdown_grace;
    log::info!("{signal}: shutting down; running turns get {grace:?} to finish");
    // New messages get a 503 from here on; reads and streams keep working while turns end.
    app.sessions.shutdown_within(grace);
    // Desktops stop and every event stream is told "server shutting down".
    app.shutdown();
    wait_for_stream_ends(&server);
    server.shutdown();
    log::info!("stopped");
    Ok(())
}

/// How long event streams get to send their closing frame before their sockets are shut.
const STREAM_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Waits (bounded) until every event stream has written its close (a WebSocket close frame,
/// the SSE closing comment) and ended, so clients learn why rather than see a reset. VNC
/// links are not event streams; the server's shutdown ends them.
fn wait_for_stream_ends(server: &ServerHandle) {
    let deadline = Instant::now() + STREAM_CLOSE_WAIT;
    while server.stream_count() > server.vnc_link_count() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("computer-use-server: {err}");
            ExitCode::FAILURE
        }
    }
}
