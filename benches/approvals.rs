//! Human-approval throughput: creating requests and verifying decisions over the REST API, and
//! deciding them over SSH, against the raw token rate.
//!
//! `cargo bench --bench approvals` (release build; run it on an otherwise idle machine). The
//! appliance runs with as many token sessions as the machine has cores, and generous rate limits.
//! For each number of concurrent clients it measures, one after another:
//!
//! - create: `POST /api/v1/approvals/request`, each client on its own keep-alive connection;
//! - decide: `approve --id` over one persistent SSH connection with that many channels in flight
//!   (each decision is signed by the token's decision key and written to the audit log);
//! - verify: `GET /api/v1/approvals/{id}/verify` of the decided requests, keep-alive as above;
//!
//! and prints each rate, its ratio to the raw rate (the same number of token sessions signing
//! through `cryptoki` with nothing else around them), the token calls and token time per
//! request, the appliance's CPU time per request, and the token's share: the time spent inside
//! the token (from `/healthz`'s `token_usage`) over the appliance's CPU time. Client, server and
//! token share the machine. `SSHSIGN_BENCH_SECONDS` sets each measurement's length (default 2).

#[path = "support/appliance.rs"]
mod appliance;
#[path = "support/proc_stat.rs"]
mod proc_stat;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::{Bench, RawToken, Server, median, seconds};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sshsign::client::Connection;

const CLIENTS: [usize; 3] = [1, 4, 16];
/// High enough that the limiter never answers 429 here.
const RATE: &str = "100000000";

/// One keep-alive HTTP/1.1 connection to the appliance.
struct Http {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Http {
            sender,
            host: addr.to_string(),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.sender.ready().await.unwrap();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !key.is_empty() {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = self
            .sender
            .send_request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// What one measurement cost the appliance and its token.
struct Cost {
    rate: f64,
    token_calls: f64,
    token_micros: f64,
    cpu_micros: f64,
}

/// The appliance's token usage and CPU time, to take differences of.
struct Meter {
    calls: u64,
    busy: f64,
    cpu: f64,
}

impl Meter {
    async fn read(server: &Server) -> Self {
        let (status, health) = Http::connect(server.http)
            .await
            .call("GET", "/healthz", "", None)
            .await;
        assert_eq!(status, 200, "{health}");
        Meter {
            calls: health["token_usage"]["calls"].as_u64().unwrap(),
            busy: health["token_usage"]["busy_seconds"].as_f64().unwrap(),
            cpu: server.cpu_seconds(),
        }
    }

    /// The cost of `requests` requests made in `elapsed` since `self`.
    async fn cost(self, server: &Server, requests: usize, elapsed: Duration) -> Cost {
        let now = Meter::read(server).await;
        let per_request = |total: f64| total / requests as f64;
        Cost {
            rate: requests as f64 / elapsed.as_secs_f64(),
            // Less the health check's own random draw.
            token_calls: per_request(now.calls.saturating_sub(self.calls + 1) as f64),
            token_micros: per_request(now.busy - self.busy) * 1e6,
            cpu_micros: per_request(now.cpu - self.cpu) * 1e6,
        }
    }
}

/// Runs `clients` copies of `work`, each returning how many requests it made; returns their sum
/// and how long they took.
async fn load<F, Fut>(clients: usize, work: F) -> (usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = usize> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| tokio::spawn(work(client)))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    (total, start.elapsed())
}

fn print_row(operation: &str, clients: usize, cost: &Cost, raw: f64) {
    println!(
        "{operation:<7} {clients:>7}  {:>8.0}  {:>5.2}  {:>10.2}  {:>10.0}  {:>10.0}  {:>6.1} %",
        cost.rate,
        cost.rate / raw,
        cost.token_calls,
        cost.token_micros,
        cost.cpu_micros,
        100.0 * cost.token_micros / cost.cpu_micros
    );
}

fn main() {
    if appliance::listing_only() {
        return;
    }
    let duration = seconds();
    let bench = Bench::new("sshsign-bench-approvals");
    let sessions = Bench::cores();
    let server = bench.start_server(
        sessions,
        &[
            ("SSHSIGN_HTTP_RATE_PER_IP", RATE),
            ("SSHSIGN_HTTP_RATE_PER_KEY", RATE),
        ],
    );
    let raw_token = RawToken::open(&bench.store, sessions);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ssh =
        runtime.block_on(async { Arc::new(Connection::connect(&server.config).await.unwrap()) });
    let words = |line: &str| -> Vec<String> { line.split(' ').map(String::from).collect() };
    let made = runtime
        .block_on(ssh.run(
            &words("api-key create --label bench --scopes approval:create,approval:read"),
            &[],
        ))
        .unwrap();
    let api_key: Arc<str> = made.json().unwrap()["api_key"].as_str().unwrap().into();

    println!(
        "sshsign approvals: {} cores, {sessions} token sessions, {:.1} s per measurement",
        Bench::cores(),
        duration.as_secs_f64()
    );
    println!(
        "raw: {sessions} threads signing through cryptoki, one session each, before each group"
    );
    println!();
    println!(
        "{:<7} {:>7}  {:>8}  {:>5}  {:>10}  {:>10}  {:>10}  {:>8}",
        "", "clients", "req/s", "÷ raw", "token/req", "token µs", "CPU µs", "token %"
    );
    for clients in CLIENTS {
        let raw = median((0..3).map(|_| raw_token.rate(duration / 2)).collect());
        println!("{:<7} {sessions:>7}  {raw:>8.0}  {:>5.2}", "raw", 1.0);
        let created = Arc::new(Mutex::new(VecDeque::new()));
        let approved = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            // create
            let before = Meter::read(&server).await;
            let start = Instant::now();
            let (requests, elapsed) = load(clients, |client| {
                let (created, api_key, http) =
                    (Arc::clone(&created), Arc::clone(&api_key), server.http);
                async move {
                    let mut connection = Http::connect(http).await;
                    let mut made = 0;
                    while start.elapsed() < duration {
                        let body = json!({
                            "action": format!("deploy release {client}.{made}"),
                            "ttl_seconds": 3600,
                            "metadata": {"service": "billing", "build": made},
                            "methods": ["ssh"],
                        });
                        let (status, reply) = connection
                            .call("POST", "/api/v1/approvals/request", &api_key, Some(&body))
                            .await;
                        assert_eq!(status, 201, "{reply}");
                        created
                            .lock()
                            .unwrap()
                            .push_back(reply["id"].as_str().unwrap().to_owned());
                        made += 1;
                    }
                    made
                }
            })
            .await;
            print_row(
                "create",
                clients,
                &before.cost(&server, requests, elapsed).await,
                raw,
            );

            // decide
            let before = Meter::read(&server).await;
            let start = Instant::now();
            let (requests, elapsed) = load(clients, |_| {
                let (created, approved, ssh) = (
                    Arc::clone(&created),
                    Arc::clone(&approved),
                    Arc::clone(&ssh),
                );
                async move {
                    let mut decided = 0;
                    while start.elapsed() < duration {
                        let Some(id) = created.lock().unwrap().pop_front() else {
                            break;
                        };
                        let output = ssh
                            .run(&["approve".into(), "--id".into(), id.clone()], &[])
                            .await
                            .unwrap();
                        assert_eq!(
                            output.exit_status,
                            0,
                            "{}",
                            String::from_utf8_lossy(&output.stdout)
                        );
                        approved.lock().unwrap().push(id);
                        decided += 1;
                    }
                    decided
                }
            })
            .await;
            print_row(
                "decide",
                clients,
                &before.cost(&server, requests, elapsed).await,
                raw,
            );

            // verify
            let approved: Arc<[String]> = approved.lock().unwrap().clone().into();
            let before = Meter::read(&server).await;
            let start = Instant::now();
            let (requests, elapsed) = load(clients, |client| {
                let (approved, http) = (Arc::clone(&approved), server.http);
                async move {
                    let mut connection = Http::connect(http).await;
                    let mut verified = 0;
                    while start.elapsed() < duration {
                        let id = &approved[(client + verified * clients) % approved.len()];
                        let (status, reply) = connection
                            .call("GET", &format!("/api/v1/approvals/{id}/verify"), "", None)
                            .await;
                        assert_eq!(status, 200, "{reply}");
                        assert_eq!(reply["valid"], true, "{reply}");
                        verified += 1;
                    }
                    verified
                }
            })
            .await;
            print_row(
                "verify",
                clients,
                &before.cost(&server, requests, elapsed).await,
                raw,
            );
        });
    }
}
