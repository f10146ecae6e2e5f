//! The application handle: everything a request handler or worker needs, cheap to clone.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::desktop::DesktopManager;
use crate::http::{self, ServerHandle};
use crate::metrics::Metrics;
use crate::session::{Broadcaster, EventSink, SessionManager};
use crate::store::{self, MeteredStore, Store};

/// Config, store, sessions, event fan-out and metrics, shared by every thread.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: SessionManager,
    pub events: EventSink,
    pub desktops: DesktopManager,
    /// What `/metrics` shows; the store, the HTTP layer and the workers record into it.
    pub metrics: Metrics,
    pub started_at: Instant,
}

impl App {
    /// Opens the configured store (applying migrations) and builds the app around it.
    pub fn build(config: Config) -> store::Result<App> {
        let pool_size = (config.http.threads as u32 + 8).min(64);
        let store = store::open(&config.database, pool_size)?;
        Ok(App::with_store(config, store))
    }

    /// Builds the app around an already opened store (wrapped to be metered).
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> App {
        let config = Arc::new(config);
        let metrics = Metrics::default();
        let store = MeteredStore::wrap(store, metrics.clone());
        let events = EventSink::new(
            store.clone(),
            Broadcaster::new(config.http.subscriber_queue),
        )
        .with_metrics(metrics.clone());
        let desktops = DesktopManager::new(&config.desktop);
        let sessions = SessionManager::new(
            config.clone(),
            store.clone(),
            events.clone(),
            desktops.clone(),
        );
        App {
            config,
            store,
            sessions,
            events,
            desktops,
            metrics,
            started_at: Instant::now(),
        }
    }

    /// Serves HTTP on `listener`, then resumes the sessions a previous run left unfinished
    /// (queued messages, interrupted turns): what starting the server means.
    pub fn serve(
        &self,
        listener: TcpListener,
    ) -> Result<ServerHandle, Box<dyn std::error::Error + Send + Sync>> {
        let server = http::serve(listener, self.clone())?;
        // The shared desktop starts in the background, ready before the first action.
        self.desktops.warm_up();
        let resumed = self.sessions.resume_all()?;
        if resumed > 0 {
            log::info!("resumed {resumed} unfinished session(s)");
        }
        Ok(server)
    }

    /// Stops every worker (cancelling running turns) and ends every stream.
    pub fn shutdown(&self) {
        self.sessions.shutdown();
        self.desktops.shutdown();
        self.events.broadcaster().close_all();
    }
}
