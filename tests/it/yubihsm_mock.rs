//! A `yubihsm-connector`-compatible HTTP front on 127.0.0.1 for the `yubihsm` crate's MockHsm:
//! the native backend (in this process, or an appliance in a child process) reaches the mock
//! exactly as it reaches a device behind `yubihsm-connector`. The front can drop the reply to
//! the next command, as a connector restart or a pulled cable does, and counts what it carried.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The front, serving until the test process ends.
pub struct MockConnector {
    pub port: u16,
    drop_next_reply: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    commands: Arc<AtomicUsize>,
}

impl MockConnector {
    /// A fresh MockHsm (its one authentication key: id 1, password `password`) behind a front on
    /// a free loopback port.
    pub fn start() -> Self {
        let device = yubihsm::Connector::mockhsm();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let drop_next_reply = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(AtomicUsize::new(0));
        let (dropping, unplugged, counted) = (
            Arc::clone(&drop_next_reply),
            Arc::clone(&down),
            Arc::clone(&commands),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let link = Link {
                    device: device.clone(),
                    drop_next_reply: Arc::clone(&dropping),
                    down: Arc::clone(&unplugged),
                    commands: Arc::clone(&counted),
                };
                std::thread::spawn(move || link.serve(stream));
            }
        });
        MockConnector {
            port,
            drop_next_reply,
            down,
            commands,
        }
    }

    /// The connector address the appliance is configured with.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The device gets the next command and acts on it, but its reply never arrives.
    pub fn drop_next_reply(&self) {
        self.drop_next_reply.store(true, Ordering::SeqCst);
    }

    /// Unplugs the device (`true`): every request is cut off unanswered until it is plugged in
    /// again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Commands carried to the device so far.
    pub fn commands(&self) -> usize {
        self.commands.load(Ordering::SeqCst)
    }
}

/// What one connection to the front shares with the others.
struct Link {
    device: yubihsm::Connector,
    drop_next_reply: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    commands: Arc<AtomicUsize>,
}

impl Link {
    /// One HTTP/1.1 connection: `POST /connector/api` carries a command to the device, `GET
    /// /connector/status` answers as yubihsm-connector does.
    fn serve(&self, stream: TcpStream) {
        let (device, drop_next_reply, down, commands) = (
            &self.device,
            &*self.drop_next_reply,
            &*self.down,
            &*self.commands,
        );
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if down.load(Ordering::SeqCst) {
                return;
            }
            let reply: Vec<u8> = if request_line.starts_with("POST /connector/api ") {
                commands.fetch_add(1, Ordering::SeqCst);
                let answer = device.send_message(uuid::Uuid::new_v4(), body.into());
                if drop_next_reply.swap(false, Ordering::SeqCst) {
                    // The device acted; the caller never hears of it.
                    return;
                }
                match answer {
                    Ok(message) => message.into(),
                    Err(_) => return,
                }
            } else {
                b"status=OK\nserial=*\nversion=2.0.0\n".to_vec()
            };
            // One write: the crate's HTTP reader (yubihsm 0.42 src/connector/http/client/response/
            // reader.rs, fill_buffer) reads each chunk to the start of its buffer, so a reply that
            // arrives in two reads loses its head; yubihsm-connector answers in one.
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                reply.len()
            )
            .into_bytes();
            response.extend_from_slice(&reply);
            if writer.write_all(&response).is_err() {
                return;
            }
        }
    }
}
