//! A test collector: it receives OTLP logs and metrics as a collector does, over HTTP
//! (protobuf bodies at `/v1/logs` and `/v1/metrics`) or gRPC (`LogsService/Export`,
//! `MetricsService/Export`), decodes the real requests with opentelemetry-proto's
//! messages, and keeps every log record with its resource, and every metrics request. It can
//! be stopped (its port closed) and started again on the same port, as a collector that
//! restarts.

use std::{
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
use tokio::{net::TcpListener, sync::oneshot};

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
}

type Received = Arc<Mutex<Inbox>>;

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
        keep_metrics(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn http(
    received: Received,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
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
    received: Received,
    running: Option<(oneshot::Sender<()>, thread::JoinHandle<()>)>,
}

impl Collector {
    /// A collector on a free loopback port.
    pub fn start(transport: Transport) -> Self {
        let addr = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut collector = Self {
            addr,
            transport,
            received: Received::default(),
            running: None,
        };
        collector.resume();
        collector
    }

    /// The URL tracer's `--otlp-endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
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
                        tonic::transport::Server::builder()
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
                            tokio::spawn(async move {
                                let service = service_fn(move |r| http(received.clone(), r));
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
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
