//! `GET /metrics` over HTTP/1.1 (hyper), on the daemon's own runtime. The runtime has one
//! thread, so a scrape runs between two ring buffer batches and holds the thread only while
//! the registry is encoded (the metrics are atomics and per-family locks nobody else holds
//! at that moment; no lock is held across an await); a slow or stuck scraper costs an
//! idle task, never the reader's time.
//!
//! The exposition is the classic Prometheus text format (0.0.4), which every Prometheus and
//! `promtool check metrics` read; OpenMetrics text when the scraper's `Accept` prefers it
//! (Prometheus itself does). prometheus-client writes both from the same registry.

use std::{convert::Infallible, fmt, future::ready, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Bytes,
    header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::{prometheus_text, text},
    registry::Registry,
};
use tokio::{net::TcpListener, task::JoinHandle};

pub const PATH: &str = "/metrics";

/// How long to wait before accepting again after `accept` failed (out of file
/// descriptors, say), instead of failing again at once in a loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition formats served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exposition {
    Prometheus,
    OpenMetrics,
}

impl Exposition {
    /// What an `Accept` header prefers: OpenMetrics when it ranks it above plain text, else
    /// the classic text format (also without a header, or with one naming neither).
    fn preferred(accept: Option<&HeaderValue>) -> Self {
        let Some(accept) = accept.and_then(|value| value.to_str().ok()) else {
            return Self::Prometheus;
        };
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in mime::MimeIter::new(accept).filter_map(Result::ok) {
            let quality = range
                .get_param("q")
                .and_then(|q| q.as_str().parse().ok())
                .unwrap_or(1.0);
            match (range.type_(), range.subtype().as_str()) {
                (mime::APPLICATION, "openmetrics-text") => openmetrics = openmetrics.max(quality),
                (mime::TEXT, "plain" | "*") | (mime::STAR, "*") => plain = plain.max(quality),
                _ => {}
            }
        }
        if openmetrics > plain {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    fn encode(self, registry: &Registry) -> Result<String, fmt::Error> {
        let mut body = String::new();
        match self {
            Self::Prometheus => prometheus_text::encode(&mut body, registry)?,
            Self::OpenMetrics => text::encode(&mut body, registry)?,
        }
        Ok(body)
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

fn respond<B>(registry: &Registry, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, "tracer serves /metrics\n");
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let exposition = Exposition::preferred(request.headers().get(ACCEPT));
    match exposition.encode(registry) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(exposition.content_type()),
            );
            response
        }
        Err(fmt::Error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        ),
    }
}

async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("tracer: warning: the metrics endpoint cannot accept a scrape ({error})");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service =
                service_fn(|request| ready(Ok::<_, Infallible>(respond(&registry, &request))));
            // A scraper that hangs up or times out sees its scrape fail and reports it
            // (`up` is 0); there is nothing for tracer to do about it.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The endpoint's task: serving until dropped.
pub struct Server {
    task: JoinHandle<()>,
    /// Where it listens (the port chosen when `--metrics-addr` said 0).
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `addr` now (so a bad address fails before tracing starts) and serves
/// `registry` from the current runtime.
pub async fn start(addr: SocketAddr, registry: Registry) -> Result<Server> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
    let addr = listener
        .local_addr()
        .context("--metrics-addr: cannot read the address listened on")?;
    Ok(Server {
        task: tokio::spawn(serve(listener, Arc::new(registry))),
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preferred(accept: &str) -> Exposition {
        Exposition::preferred(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn classic_text_unless_openmetrics_is_preferred() {
        assert_eq!(Exposition::preferred(None), Exposition::Prometheus);
        assert_eq!(preferred("*/*"), Exposition::Prometheus);
        assert_eq!(
            preferred("text/plain;version=0.0.4"),
            Exposition::Prometheus
        );
        // What Prometheus 2.42 sends.
        assert_eq!(
            preferred(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Exposition::OpenMetrics
        );
        assert_eq!(
            preferred("text/plain;q=1,application/openmetrics-text;q=0.5"),
            Exposition::Prometheus
        );
        assert_eq!(
            preferred("application/openmetrics-text;q=0"),
            Exposition::Prometheus
        );
        assert_eq!(preferred("nonsense"), Exposition::Prometheus);
    }

    #[test]
    fn only_get_metrics_is_served() {
        let registry = Registry::default();
        let get = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            respond(&registry, &request)
        };
        let ok = get(Method::GET, "/metrics");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], prometheus_text::CONTENT_TYPE);
        assert_eq!(get(Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get(Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
