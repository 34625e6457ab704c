//! TLS for the OTLP exporters, from the files the OpenTelemetry specification's exporter
//! configuration names: `OTEL_EXPORTER_OTLP_CERTIFICATE` (the collector's CA),
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (tracer's
//! own, for a collector that asks for one), each also per signal
//! (`OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE`, ...). The `opentelemetry-otlp` crate reads the
//! headers, timeout and compression variables itself but not these, so tracer gives it an
//! HTTP client and a gRPC TLS configuration made from them.
//!
//! Decisions: a CA file is the only trust (as the Go and Java SDKs do): a collector with a
//! private CA is not also checked against the system's roots. Without one, an `https://`
//! endpoint is checked against the system's roots. A file that cannot be read or parsed
//! stops tracer at start, in one line naming the variable and the file.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, bail};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// One signal's TLS files, as `cli` resolved them from the variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The collector's CA, PEM.
    pub certificate: Option<TlsFile>,
    /// tracer's certificate (chain), PEM, and its private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub client_certificate: Option<TlsFile>,
    pub client_key: Option<TlsFile>,
}

/// A file and the variable that named it (for the error that says it cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    pub variable: String,
    pub path: PathBuf,
}

impl TlsFile {
    fn read(&self) -> Result<Vec<u8>> {
        fs::read(&self.path)
            .with_context(|| format!("cannot read {} ({})", self.variable, self.path.display()))
    }
}

/// The files' contents, read and checked once.
struct Pem {
    certificate: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    fn read(&self) -> Result<Pem> {
        let identity = match (&self.client_certificate, &self.client_key) {
            (Some(certificate), Some(key)) => Some((certificate.read()?, key.read()?)),
            (None, None) => None,
            (Some(given), None) | (None, Some(given)) => bail!(
                "{} is set without its pair: a client certificate needs both \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                given.variable
            ),
        };
        Ok(Pem {
            certificate: self.certificate.as_ref().map(TlsFile::read).transpose()?,
            identity,
        })
    }

    /// The HTTP client OTLP/HTTP uses when a file is given (`None`: the crate's own, which
    /// checks against the system's roots).
    pub fn http_client(&self) -> Result<Option<reqwest::Client>> {
        let pem = self.read()?;
        if pem.certificate.is_none() && pem.identity.is_none() {
            return Ok(None);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(certificate) = &pem.certificate {
            let roots = reqwest::Certificate::from_pem_bundle(certificate)
                .with_context(|| format!("{} holds no PEM certificate", self.names_ca()))?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some((certificate, key)) = &pem.identity {
            let identity = reqwest::Identity::from_pem(&[certificate.as_slice(), key].concat())
                .context("the client certificate or key is not usable PEM")?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .context("cannot make the OTLP HTTP client")?;
        Ok(Some(client))
    }

    /// The TLS configuration OTLP/gRPC uses for an `https://` endpoint (a plain `http://`
    /// one ignores it).
    pub fn grpc(&self) -> Result<ClientTlsConfig> {
        let pem = self.read()?;
        let mut config = ClientTlsConfig::new();
        config = match pem.certificate {
            Some(certificate) => config.ca_certificate(Certificate::from_pem(certificate)),
            None => config.with_native_roots(),
        };
        if let Some((certificate, key)) = pem.identity {
            config = config.identity(Identity::from_pem(certificate, key));
        }
        Ok(config)
    }

    fn names_ca(&self) -> String {
        self.certificate
            .as_ref()
            .map(|file| format!("{} ({})", file.variable, file.path.display()))
            .unwrap_or_default()
    }
}
