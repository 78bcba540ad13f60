//! `continuum-bench mllp`: sustained HL7 v2 ingest over MLLP with ACK-after-commit (issue 6's
//! figure). A scratch store is served by the real listener on a loopback port; each client
//! connection sends messages one after another, each waiting for its ACK (an ACK is sent only
//! once the message's effects are committed, so one message is in flight per connection),
//! alternating an `ADT^A01` admission of a new patient and an `ORU^R01` with three results
//! for that patient. Every message has its own control id, so none is a duplicate.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Args)]
pub(crate) struct MllpBenchArgs {
    /// Concurrent MLLP connections, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    connections: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Scratch data directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// The message number `i` of connection `worker` in run `run`: even numbers admit a new
/// patient, odd numbers report that patient's results.
fn message(run: usize, worker: usize, i: usize) -> String {
    let patient = format!("B{run}-{worker}-{}", i / 2);
    let control = format!("BENCH-{run}-{worker}-{i}");
    let msh = |kind: &str| format!("MSH|^~\\&|BENCH|LAB|CONT|CONT|20240301120000+0100||{kind}|{control}|P|2.5.1\r");
    let pid = format!("PID|1||{patient}^^^GHH&1.2.3.4&ISO^MR||Bench^Pat{i}||19700101|F\r");
    if i.is_multiple_of(2) {
        format!(
            "{}EVN|A01\r{pid}PV1|1|I|W1^1^A||||||||||||||||V{patient}^^^GHH&1.2.3.4&ISO^VN|||||||||||||||||||||||||20240301113000+0100\r",
            msh("ADT^A01^ADT_A01")
        )
    } else {
        format!(
            "{}{pid}OBR|1|O{patient}|F{patient}|24323-8^Metabolic panel^LN|||20240301080000+0100|||||||||||||||||||F\r\
             OBX|1|NM|2345-7^Glucose^LN||182|mg/dL^mg/dL^UCUM|70-105|H|||F|||20240301080000+0100\r\
             OBX|2|NM|2160-0^Creatinine^LN||0.9|mg/dL^mg/dL^UCUM|0.6-1.2|N|||F|||20240301080000+0100\r\
             OBX|3|NM|2951-2^Sodium^LN||140|mmol/L^mmol/L^UCUM|135-145|N|||F|||20240301080000+0100\r",
            msh("ORU^R01^ORU_R01")
        )
    }
}

struct RunResult {
    accepted: u64,
    refused: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl RunResult {
    fn percentile(&self, p: f64) -> f64 {
        crate::client::percentile_ms(&self.latencies_us, p).unwrap_or(0.0)
    }
}

pub(crate) fn run(args: MllpBenchArgs) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| scratch.path().join("data"));
    let continuum::Store { records, message_log: log, .. } =
        continuum::open_store(&data, &continuum::DatabaseArg::default())?;
    let interface = Arc::new(hl7_interface::Interface::new(access::Door::open(records), log));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(hl7_interface::serve(listener, interface, hl7_interface::ListenerConfig::default(), async {
                let _ = stopped.await;
            }));
        println!("MLLP ingest, ACK after commit, ADT^A01 and ORU^R01 (3 OBX) alternating, embedded store:");
        for (run, &connections) in args.connections.iter().enumerate() {
            if connections == 0 {
                bail!("--connections wants counts of at least 1");
            }
            let result = drive(address, run, connections, Duration::from_secs(args.seconds)).await?;
            println!(
                "mllp:       {:.0} messages/s over {:.1} s, {connections} connection(s), p50 {:.2} ms, p99 {:.2} ms, \
                 {} AA, {} not AA",
                result.accepted as f64 / result.elapsed.as_secs_f64(),
                result.elapsed.as_secs_f64(),
                result.percentile(0.50),
                result.percentile(0.99),
                result.accepted,
                result.refused,
            );
        }
        println!("goal:       >= 3,000 messages/s");
        let _ = stop.send(());
        server.await.context("MLLP listener panicked")??;
        Ok(())
    })
}

async fn drive(address: SocketAddr, run: usize, connections: usize, duration: Duration) -> Result<RunResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut refused, mut latencies) = (0u64, 0u64, Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let frame = hl7v2::mllp::frame(message(run, worker, i).as_bytes()).context("framing")?;
                let sent = Instant::now();
                stream.write_all(&frame).await?;
                let ack = read_frame(&mut stream).await?;
                latencies.push(sent.elapsed().as_micros() as u64);
                if ack.windows(7).any(|w| w == b"\rMSA|AA") {
                    accepted += 1;
                } else {
                    refused += 1;
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>((accepted, refused, latencies))
        }));
    }
    let mut result = RunResult { accepted: 0, refused: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for task in tasks {
        let (accepted, refused, latencies) = task.await??;
        result.accepted += accepted;
        result.refused += refused;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            bail!("the listener closed the connection");
        }
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return frame.map_err(|_| anyhow::anyhow!("an invalid ACK frame"));
        }
    }
}
