//! A test collector: it receives OTLP logs and metrics as a collector does, over HTTP
//! (protobuf bodies at `/v1/logs` and `/v1/metrics`) or gRPC (`LogsService/Export`,
//! `MetricsService/Export`), decodes the real requests with opentelemetry-proto's
//! messages, and keeps every log record with its resource, and every metrics request. It can
//! be stopped (its port closed) and started again on the same port, as a collector that
//! restarts. It can listen with TLS ([`Pki`]: a CA of its own, and a client certificate
//! it requires), and it keeps each request's headers.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    sync::{Arc, Mutex},
    thread,
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
    },
    common::v1::KeyValue,
    logs::v1::LogRecord,
};
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
        server::WebPkiClientVerifier,
    },
};

/// A log record as received, with its resource's attributes.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    pub resource: Vec<KeyValue>,
    pub record: LogRecord,
}

/// What the collector received.
#[derive(Debug, Default)]
pub struct Inbox {
    logs: Vec<ReceivedLog>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// Each request's headers (gRPC's metadata), names in lower case.
    headers: Vec<Headers>,
}

pub type Headers = BTreeMap<String, String>;

type Received = Arc<Mutex<Inbox>>;

fn keep_headers(received: &Received, headers: &hyper::HeaderMap) {
    let headers = (headers.iter())
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    received.lock().unwrap().headers.push(headers);
}

/// A CA, the collector's certificate it signed (for `127.0.0.1` and `localhost`), and a
/// client's, all PEM, written into a directory for tracer's `OTEL_EXPORTER_OTLP_*`
/// variables to name.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: String,
    server: (String, String),
}

impl Pki {
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let signed = |names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let params = CertificateParams::new(names).unwrap();
            let certificate = params.signed_by(&key, &ca).unwrap();
            (certificate.pem(), key.serialize_pem())
        };
        let server = signed(&["127.0.0.1", "localhost"]);
        let client = signed(&["tracer"]);
        let dir = tempfile::tempdir().unwrap();
        for (name, pem) in [
            ("ca.pem", &ca.pem()),
            ("client.pem", &client.0),
            ("client.key", &client.1),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Self {
            dir,
            ca: ca.pem(),
            server,
        }
    }

    /// The variables that give tracer the CA and its client certificate.
    pub fn variables(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("OTEL_EXPORTER_OTLP_CERTIFICATE".into(), path("ca.pem")),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE".into(),
                path("client.pem"),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY".into(), path("client.key")),
        ]
    }

    /// The collector's TLS over HTTP: its certificate, and a client's signed by the CA
    /// required.
    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).unwrap())
            .unwrap();
        let clients = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
        let certificate = CertificateDer::from_pem_slice(self.server.0.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.server.1.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(vec![certificate], key)
            .unwrap();
        Arc::new(config)
    }

    /// The same over gRPC, as tonic takes it.
    fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.server.0, &self.server.1))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }
}

/// How the collector listens: in the clear, or with TLS.
#[derive(Clone)]
enum Security {
    Plain,
    Tls(Arc<ServerConfig>, tonic::transport::ServerTlsConfig),
}

fn keep_metrics(received: &Received, request: ExportMetricsServiceRequest) {
    received.lock().unwrap().metrics.push(request);
}

fn keep(received: &Received, request: ExportLogsServiceRequest) {
    let received = &mut received.lock().unwrap().logs;
    for resource_logs in request.resource_logs {
        let resource = resource_logs
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        for scope_logs in resource_logs.scope_logs {
            for record in scope_logs.log_records {
                received.push(ReceivedLog {
                    resource: resource.clone(),
                    record,
                });
            }
        }
    }
}

/// Which way the collector listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Http,
    Grpc,
}

struct Grpc(Received);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        keep_headers(&self.0, &request.metadata().clone().into_headers());
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        keep_headers(&self.0, &request.metadata().clone().into_headers());
        keep_metrics(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn http(
    received: Received,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    keep_headers(&received, request.headers());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let answer = match path.as_str() {
        "/v1/logs" => {
            keep(&received, ExportLogsServiceRequest::decode(body).unwrap());
            ExportLogsServiceResponse::default().encode_to_vec()
        }
        "/v1/metrics" => {
            keep_metrics(
                &received,
                ExportMetricsServiceRequest::decode(body).unwrap(),
            );
            ExportMetricsServiceResponse::default().encode_to_vec()
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

/// The collector; stopped when dropped.
pub struct Collector {
    pub addr: SocketAddr,
    transport: Transport,
    security: Security,
    received: Received,
    running: Option<(oneshot::Sender<()>, thread::JoinHandle<()>)>,
}

impl Collector {
    /// A collector on a free loopback port.
    pub fn start(transport: Transport) -> Self {
        Self::listen(transport, Security::Plain)
    }

    /// A collector that speaks TLS with `pki`'s certificate and requires a client
    /// certificate `pki`'s CA signed.
    pub fn start_tls(transport: Transport, pki: &Pki) -> Self {
        Self::listen(
            transport,
            Security::Tls(pki.server_config(), pki.grpc_config()),
        )
    }

    fn listen(transport: Transport, security: Security) -> Self {
        let addr = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut collector = Self {
            addr,
            transport,
            security,
            received: Received::default(),
            running: None,
        };
        collector.resume();
        collector
    }

    /// The URL tracer's `--otlp-endpoint` takes.
    pub fn endpoint(&self) -> String {
        match self.security {
            Security::Plain => format!("http://{}", self.addr),
            Security::Tls(..) => format!("https://{}", self.addr),
        }
    }

    /// Each request's headers so far.
    pub fn headers(&self) -> Vec<Headers> {
        self.received.lock().unwrap().headers.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.received.lock().unwrap().logs.clone()
    }

    /// Every metrics request received so far.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received.lock().unwrap().metrics.clone()
    }

    /// Closes its port: requests are refused until [`resume`](Self::resume).
    pub fn pause(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().unwrap();
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        let listener = StdListener::bind(self.addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (received, transport) = (self.received.clone(), self.transport);
        let security = self.security.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                match transport {
                    Transport::Grpc => {
                        let incoming = tonic::transport::server::TcpIncoming::from(listener);
                        let mut server = tonic::transport::Server::builder();
                        if let Security::Tls(_, config) = security {
                            server = server.tls_config(config).unwrap();
                        }
                        server
                            .add_service(LogsServiceServer::new(Grpc(received.clone())))
                            .add_service(MetricsServiceServer::new(Grpc(received)))
                            .serve_with_incoming_shutdown(incoming, async {
                                let _ = stopped.await;
                            })
                            .await
                            .unwrap();
                    }
                    Transport::Http => {
                        let mut stopped = stopped;
                        loop {
                            let (stream, _) = tokio::select! {
                                accepted = listener.accept() => accepted.unwrap(),
                                _ = &mut stopped => break,
                            };
                            let received = received.clone();
                            let security = security.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |r| http(received.clone(), r));
                                let http1 = http1::Builder::new();
                                let _ = match security {
                                    Security::Plain => {
                                        http1.serve_connection(TokioIo::new(stream), service).await
                                    }
                                    Security::Tls(config, _) => {
                                        // A handshake refused (no client certificate) ends
                                        // the connection: no request is kept.
                                        let Ok(stream) =
                                            TlsAcceptor::from(config).accept(stream).await
                                        else {
                                            return;
                                        };
                                        http1.serve_connection(TokioIo::new(stream), service).await
                                    }
                                };
                            });
                        }
                    }
                }
            });
        });
        self.running = Some((stop, thread));
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.pause();
    }
}
