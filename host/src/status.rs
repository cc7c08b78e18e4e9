//! `replog status`: the cluster as its master sees it, as a table, for people and scripts.
//!
//! The master's `/health` says whether it takes writes and how far each secondary has
//! acknowledged; each secondary's own `/health` adds its count, epoch and version. The exit
//! code says whether the cluster can take writes. In an elected cluster any member will do:
//! one that is not master names the master it follows, and the report starts from that one,
//! with a line on the election (the master, its epoch, its lease left, the members).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::probe;

/// What `replog status` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The master takes writes.
    Writable,
    /// It answers, but takes none (recovering, fenced, too few secondaries).
    ReadOnly,
    /// It does not answer, or not as a replog master does.
    Unreachable,
}

impl From<Verdict> for ExitCode {
    fn from(verdict: Verdict) -> Self {
        ExitCode::from(match verdict {
            Verdict::Writable => 0,
            Verdict::ReadOnly => 1,
            Verdict::Unreachable => 2,
        })
    }
}

/// One node's line.
struct Row {
    node: String,
    role: &'static str,
    /// The log's first `seq` (past 1 once retention removed older entries).
    first: String,
    count: String,
    lag: String,
    status: String,
    epoch: String,
    /// Bytes of its log files, and entries retention removed.
    disk: String,
    removed: String,
    version: String,
}

/// Asks the master at `master` and its secondaries; returns the report and the verdict.
pub(crate) async fn status(master: &str, timeout: Duration) -> (String, Verdict) {
    let asked = master.trim_end_matches('/');
    let (master, health) = match get_health(asked, timeout).await {
        Ok(health) if health["role"] == "master" => (asked.to_owned(), health),
        Ok(other) if other["election"]["master"]["url"].is_string() => {
            let url = other["election"]["master"]["url"].as_str().unwrap_or_default();
            match get_health(url, timeout).await {
                Ok(health) if health["role"] == "master" => (url.to_owned(), health),
                Ok(_) => {
                    let out = format!("{asked} follows {url}, which is not a master (now)\n");
                    return (out, Verdict::Unreachable);
                }
                Err(why) => {
                    return (format!("{asked} follows {url}: {why}\n"), Verdict::Unreachable);
                }
            }
        }
        Ok(other) => {
            let role = other["role"].as_str().unwrap_or("unknown");
            return (format!("{master} is not a master (role: {role})\n"), Verdict::Unreachable);
        }
        Err(why) => return (format!("{master}: {why}\n"), Verdict::Unreachable),
    };
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let master = master.as_str();
    let writable = health["writable"] == true;
    let mut rows = vec![Row {
        node: master.to_owned(),
        role: "master",
        first: text(&health["first_seq"]),
        count: text(&health["count"]),
        lag: "-".to_owned(),
        status: text(&health["state"]),
        epoch: text(&health["epoch"]),
        disk: bytes(&health["disk_bytes"]),
        removed: text(&health["removed"]),
        version: text(&health["component"]["version"]),
    }];
    let secondaries = health["secondaries"].as_array().cloned().unwrap_or_default();
    let own = probe::join_all(secondaries.iter().map(|s| {
        let url = s["url"].as_str().unwrap_or_default().trim_end_matches('/').to_owned();
        async move { get_health(&url, timeout).await }
    }))
    .await;
    for (seen, own) in secondaries.iter().zip(own) {
        let unknown = || "?".to_owned();
        let row = Row {
            node: text(&seen["url"]),
            role: "secondary",
            first: unknown(),
            count: unknown(),
            lag: text(&seen["lag"]),
            status: text(&seen["status"]),
            epoch: unknown(),
            disk: unknown(),
            removed: unknown(),
            version: "unreachable".to_owned(),
        };
        rows.push(match &own {
            Ok(own) => Row {
                first: text(&own["first_seq"]),
                count: text(&own["count"]),
                epoch: text(&own["epoch"]),
                disk: bytes(&own["disk_bytes"]),
                removed: text(&own["removed"]),
                version: text(&own["component"]["version"]),
                ..row
            },
            Err(_) => row,
        });
    }
    let mut out = table(&rows);
    if let Some(line) = election_line(&health["election"]) {
        let _ = writeln!(out, "\n{line}");
    }
    match (writable, health["reason"].as_str()) {
        (true, _) => out.push_str("\ncluster takes writes\n"),
        (false, Some(why)) => {
            let _ = writeln!(out, "\ncluster takes NO writes: {why}");
        }
        (false, None) => out.push_str("\ncluster takes NO writes\n"),
    }
    (out, if writable { Verdict::Writable } else { Verdict::ReadOnly })
}

/// A line on the election from a master's `election` object, if it has one.
fn election_line(election: &Value) -> Option<String> {
    let master = election.get("master").filter(|m| m.is_object())?;
    let members: Vec<&str> =
        election["members"].as_array()?.iter().filter_map(|m| m["name"].as_str()).collect();
    let lease = match election["lease_ms_left"].as_u64() {
        Some(ms) => format!("lease {ms} ms left"),
        None => "no lease".to_owned(),
    };
    Some(format!(
        "elected: {} ({}) is master in epoch {}, {lease}; cluster {}, members {}",
        master["name"].as_str().unwrap_or("?"),
        master["url"].as_str().unwrap_or("?"),
        master["epoch"],
        election["cluster"].as_str().unwrap_or("?"),
        members.join(", ")
    ))
}

/// `GET {base}/health` as JSON.
async fn get_health(base: &str, timeout: Duration) -> Result<Value, String> {
    let (status, body) =
        probe::fetch(&format!("{base}/health"), timeout).await.map_err(|e| e.to_string())?;
    probe::json_answer("/health", status, &body)
}

/// A size in bytes for a person: `812 B`, `4.0 KiB`, `63.9 MiB`, `1.2 GiB` (`-` when unknown).
fn bytes(value: &Value) -> String {
    let Some(bytes) = value.as_u64() else { return "-".to_owned() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{size:.1} {}", units[unit]) }
}

fn table(rows: &[Row]) -> String {
    let header =
        ["NODE", "ROLE", "FIRST", "COUNT", "LAG", "STATUS", "EPOCH", "DISK", "REMOVED", "VERSION"];
    let cells: Vec<[&str; 10]> = rows
        .iter()
        .map(|r| {
            [
                &*r.node,
                r.role,
                &*r.first,
                &*r.count,
                &*r.lag,
                &*r.status,
                &*r.epoch,
                &*r.disk,
                &*r.removed,
                &*r.version,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_widths() {
        let row = |node: &str, count: &str| Row {
            node: node.into(),
            role: "secondary",
            first: "1".into(),
            count: count.into(),
            lag: "0".into(),
            status: "healthy".into(),
            epoch: "1".into(),
            disk: bytes(&Value::from(66_977_792u64)),
            removed: "0".into(),
            version: "0.4.0".into(),
        };
        let out = table(&[row("http://a:1", "5"), row("http://long-name:8001", "123456")]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        let role_at = lines[0].find("ROLE").unwrap();
        assert!(lines.iter().skip(1).all(|l| l[role_at..].starts_with("secondary")), "{out}");
        assert!(out.contains("63.9 MiB"), "{out}");
        let sizes = [0u64, 812, 4096, 1 << 30].map(|b| bytes(&Value::from(b)));
        assert_eq!(sizes, ["0 B", "812 B", "4.0 KiB", "1.0 GiB"]);
        assert_eq!(bytes(&Value::Null), "-");
    }

    #[test]
    fn an_elected_master_is_named_with_its_epoch_lease_and_members() {
        let election = serde_json::json!({
            "cluster": "replog",
            "member": "n2",
            "master": { "name": "n2", "url": "http://h2:8000", "epoch": 17 },
            "lease_ms_left": 1800,
            "members": [{ "name": "n1" }, { "name": "n2" }, { "name": "n3" }],
        });
        assert_eq!(
            election_line(&election).unwrap(),
            "elected: n2 (http://h2:8000) is master in epoch 17, lease 1800 ms left; cluster \
             replog, members n1, n2, n3"
        );
        assert_eq!(election_line(&Value::Null), None, "a master by configuration");
        assert_eq!(election_line(&serde_json::json!({ "master": null })), None);
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (out, verdict) = status(&url, Duration::from_secs(2)).await;
        assert_eq!(verdict, Verdict::Unreachable, "{out}");
        assert!(out.contains("cannot connect"), "{out}");
    }
}
