//! `replog tail`: prints the log from a `seq` on, from any of several nodes; with `--follow`
//! it goes on as the log grows, through long-polls, and when a node fails it moves to the next
//! one listed and resumes after the last `seq` it printed. Positions are the same on every
//! node, so nothing is printed twice or skipped; committed entries (the default) are the same
//! on every node, and no later master takes them back.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{Connection, Node, error_text};
use super::{Ended, Outcome};

/// What `replog tail` prints, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TailOptions {
    /// The first `seq` to print (0: the first the node holds).
    pub(crate) from: u64,
    pub(crate) follow: bool,
    /// JSON lines (`{"seq":N,"msg":"..."}`) instead of messages alone.
    pub(crate) json: bool,
    /// Committed entries only (else everything the node holds, which may be taken back).
    pub(crate) committed: bool,
    /// How long each long-poll waits on the node.
    pub(crate) wait: Duration,
}

/// Entries asked for at a time.
const PAGE: u64 = 1000;
/// The longest pause between rounds over nodes that all failed.
const MOST_PAUSE: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Page {
    messages: Vec<String>,
    next: u64,
}

/// A node's `410`: retention removed what was asked for.
#[derive(Deserialize)]
struct Gone {
    first_seq: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    msg: &'a str,
}

/// Prints from `options.from` through what the nodes hold (and on, with `follow`).
pub(crate) async fn tail(
    nodes: Vec<Node>,
    options: TailOptions,
    out: &mut dyn Write,
) -> Outcome<()> {
    let mut connections: Vec<Connection> = nodes.into_iter().map(Connection::new).collect();
    let mut at = 0;
    let mut next = options.from;
    let mut failed_in_a_row = 0;
    // Nodes in a row that no longer hold `next`, and the latest start among them.
    let mut gone_in_a_row = 0;
    let mut gone_start = 0;
    let mut pause = Duration::from_millis(100);
    loop {
        let connection = &mut connections[at];
        let wait = if options.follow { options.wait } else { Duration::ZERO };
        let path = format!(
            "/messages?from={next}&limit={PAGE}&committed={}&wait={}",
            options.committed,
            wait.as_millis()
        );
        let answer = connection
            .exchange(http::Method::GET, &path, None, wait + Duration::from_secs(10))
            .await;
        let url = connection.node.url.clone();
        let failure = match answer {
            Ok(answer) if answer.status == 200 => {
                match serde_json::from_slice::<Page>(&answer.body) {
                    Ok(page) => {
                        failed_in_a_row = 0;
                        gone_in_a_row = 0;
                        pause = Duration::from_millis(100);
                        let caught_up = page.messages.is_empty();
                        let first = page.next - page.messages.len() as u64;
                        print_page(out, first, &page.messages, options.json)?;
                        next = page.next.max(next);
                        if caught_up && !options.follow {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => format!("its answer is not a page of the log: {e}"),
                }
            }
            // A request the node refuses as such is refused by every node: say so and stop.
            Ok(answer) if answer.status == 400 => {
                return Err(format!("{url} refused the read: {}", error_text(&answer.body)).into());
            }
            // Retention removed it here; another node may keep more. Once none holds it, say so
            // plainly and stop: going on from the start would skip entries unseen.
            Ok(answer) if answer.status == 410 => {
                let start = serde_json::from_slice::<Gone>(&answer.body).map_or(0, |g| g.first_seq);
                gone_start = gone_start.max(start);
                gone_in_a_row += 1;
                if gone_in_a_row >= connections.len() {
                    return Err(format!(
                        "seq {next} is no longer held by any node: retention removed it (the log \
                         starts at seq {gone_start} on {url}); run again with --from {gone_start} \
                         to go on from there"
                    )
                    .into());
                }
                format!("no longer holds seq {next} (it starts at {start})")
            }
            Ok(answer) => format!("answered {}: {}", answer.status, error_text(&answer.body)),
            Err(e) => e.to_string(),
        };
        failed_in_a_row += 1;
        let count = connections.len();
        at = (at + 1) % count;
        if failed_in_a_row >= count {
            if !options.follow {
                return Err(format!("no node answered; the last, {url}: {failure}").into());
            }
            eprintln!("no node answers now (the last, {url}: {failure}); trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MOST_PAUSE);
            failed_in_a_row = 0;
        } else {
            eprintln!("{url}: {failure}; going on from seq {next} at {}", connections[at].node.url);
        }
    }
}

/// Prints `messages`, the first of which is at `seq` = `first`.
fn print_page(out: &mut dyn Write, first: u64, messages: &[String], json: bool) -> Outcome<()> {
    let mut text = String::new();
    for (seq, msg) in (first..).zip(messages) {
        if json {
            let line = serde_json::to_string(&Line { seq, msg })
                .map_err(|e| Ended::Failed(e.to_string()))?;
            text.push_str(&line);
        } else {
            text.push_str(msg);
        }
        text.push('\n');
    }
    super::print(out, &text)
}
