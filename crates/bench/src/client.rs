//! HTTP/1.1 over loopback as the benchmarks' clients speak it (keep-alive connections, one
//! request in flight on each), latency quantiles, and the limits the benchmarks serve with.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request to the server under test, with `body` as FHIR JSON.
pub(crate) fn request(method: Method, path: &str, body: Option<Value>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", "bench");
    let body = match body {
        Some(value) => {
            builder = builder.header("content-type", "application/fhir+json");
            Bytes::from(value.to_string())
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).unwrap_or_default()
}

/// One HTTP/1.1 keep-alive connection, as a load-generating client holds it.
pub(crate) async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads the whole answer; the status and body.
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// What a run of clients got: answers, errors and every latency.
pub(crate) struct Measured {
    /// Requests answered with a 2xx.
    pub ok: u64,
    /// Requests answered otherwise, or not answered.
    pub errors: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Every request's latency in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl Measured {
    /// Requests answered with a 2xx per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0 to 1) of the latencies, in milliseconds (`None` when there are none).
    pub(crate) fn percentile(&self, p: f64) -> Option<f64> {
        percentile_ms(&self.latencies_us, p)
    }
}

/// Runs `clients` keep-alive connections, each sending `make(worker, i)` one after another
/// until `duration` is over. A 2xx answer counts as ok; another answer, or a broken
/// connection (then made anew), as an error.
pub(crate) async fn run_clients<F>(address: SocketAddr, clients: usize, duration: Duration, make: F) -> Result<Measured>
where
    F: Fn(usize, usize) -> Request<Full<Bytes>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let make = make.clone();
        let mut sender = connect(address).await?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match exchange(&mut sender, make(worker, i)).await {
                    Ok((status, _)) if (200..300).contains(&status) => ok += 1,
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match connect(address).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                i += 1;
            }
            (ok, errors, latencies)
        }));
    }
    let mut result = Measured { ok: 0, errors: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for task in tasks {
        let (ok, errors, latencies) = task.await?;
        result.ok += ok;
        result.errors += errors;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

/// The `p` quantile (0 to 1) of latencies sorted in microseconds, in milliseconds (`None` when
/// there are none).
pub(crate) fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    let last = sorted_us.len().checked_sub(1)?;
    let index = ((last as f64) * p).round() as usize;
    Some(sorted_us[index.min(last)] as f64 / 1000.0)
}

/// The server's default limits, but no per-client rate limit: every simulated client shares
/// one address, and the bench measures the server, not the limiter.
pub(crate) fn bench_limits() -> server::Limits {
    server::Limits { rate_limit: None, ..server::Limits::default() }
}
