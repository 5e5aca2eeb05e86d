//! A channel with a person at its other end: what they type and how their terminal is sized
//! reach the task serving the channel as [`Input`]s, and long text is shown a screen at a time
//! ([`page`]), as `more` would.
//!
//! Input is delivered by the connection's russh callbacks without waiting: a task that does not
//! read it (a command still running) lets at most [`INPUT_QUEUE`] messages wait, and keys typed
//! past that are dropped, so a client typing fast never holds the connection up. A client that
//! goes away closes the queue, and the task ends.

use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::mpsc;

use super::text::{Terminal, for_pty};

/// Input messages a channel keeps for its task.
pub const INPUT_QUEUE: usize = 64;

/// What reaches a channel's task from the person's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes typed (the terminal is raw: one key may be several bytes).
    Data(Vec<u8>),
    /// The terminal was resized.
    Resize { cols: u32, rows: u32 },
    /// The input ended (the client's stdin is not a terminal, or was closed).
    Eof,
}

/// Where a channel's output goes.
pub struct Screen {
    pub handle: Handle,
    pub channel: ChannelId,
}

impl Screen {
    /// Sends `text` with CR LF line ends; false once the client is gone.
    pub async fn send(&self, text: &str) -> bool {
        self.handle
            .data(self.channel, for_pty(text.as_bytes()))
            .await
            .is_ok()
    }
}

/// What a key does in the pager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Page,
    Line,
    Quit,
}

fn step_of(byte: u8) -> Option<Step> {
    match byte {
        b' ' | b'f' => Some(Step::Page),
        b'\r' | b'\n' | b'j' => Some(Step::Line),
        // q, Q, Ctrl-C, Ctrl-D
        b'q' | b'Q' | 3 | 4 => Some(Step::Quit),
        _ => None,
    }
}

/// Shows `text` on `screen`: whole if it fits the terminal, otherwise a screen at a time with a
/// prompt (space: a page; enter: a line; q: stop). If the input ends, the rest is shown at once
/// (the person's side cannot answer the prompt); if the client goes, showing stops.
pub async fn page(
    text: &str,
    terminal: &Terminal,
    inputs: &mut mpsc::Receiver<Input>,
    screen: &Screen,
) {
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = terminal.rows.max(2);
    if lines.len() < rows {
        screen.send(text).await;
        return;
    }
    let show = |from: usize, to: usize| {
        let mut chunk = lines[from..to.min(lines.len())].join("\n");
        chunk.push('\n');
        chunk
    };
    let mut shown = rows - 1;
    if !screen.send(&show(0, shown)).await {
        return;
    }
    let prompt = |shown: usize| {
        let percent = shown * 100 / lines.len();
        let words = format!("-- more ({percent}%): space a page, enter a line, q to stop --");
        if terminal.colour {
            format!("\x1b[7m{words}\x1b[0m")
        } else {
            words
        }
    };
    while shown < lines.len() {
        if !screen.send(&prompt(shown)).await {
            return;
        }
        let step = loop {
            match inputs.recv().await {
                None => return,
                Some(Input::Eof) => break Some(lines.len()),
                Some(Input::Resize { rows: r, .. }) => {
                    rows = Terminal::from_pty("", 80, r).rows.max(2);
                }
                Some(Input::Data(bytes)) => match bytes.iter().find_map(|b| step_of(*b)) {
                    Some(Step::Quit) => break None,
                    Some(Step::Page) => break Some(rows - 1),
                    Some(Step::Line) => break Some(1),
                    None => {}
                },
            }
        };
        // Erase the prompt.
        if !screen.send("\r\x1b[K").await {
            return;
        }
        let Some(step) = step else {
            return;
        };
        let to = (shown + step).min(lines.len());
        if !screen.send(&show(shown, to)).await {
            return;
        }
        shown = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_the_pager() {
        assert_eq!(step_of(b' '), Some(Step::Page));
        assert_eq!(step_of(b'\r'), Some(Step::Line));
        assert_eq!(step_of(3), Some(Step::Quit));
        assert_eq!(step_of(b'x'), None);
    }
}
