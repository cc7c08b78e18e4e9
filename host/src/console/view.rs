//! The cluster as the console shows it: every node's `/health` and its last messages, gathered
//! by the node the page came from.
//!
//! Gathered here, not by the page: the URLs the nodes know each other by (Docker's service
//! names, a pod's DNS name) are often not ones a browser can reach, and the page then needs
//! no cross-origin access to any node. The node reads only what any client may read (`GET
//! /health`, `GET /messages`), of the nodes its configuration or its election names, never of
//! a URL a request gives. One gathering serves every console that asks within `FRESH`, so
//! that open consoles cost the cluster a few reads a second, however many there are.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde_json::Value;

use crate::config::Role;
use crate::probe;
use crate::seat::Seat;

/// How long one gathering is shown to every console that asks.
const FRESH: Duration = Duration::from_millis(250);

/// How long a node may take to answer a read before its card says it does not answer.
const ASK_FOR: Duration = Duration::from_millis(1_500);

/// The messages each card shows, the node's last.
const LAST_MESSAGES: u64 = 5;

/// The latest gathering, shared by the consoles of one node.
#[derive(Default)]
pub(crate) struct Views {
    latest: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
}

impl Views {
    /// The cluster now as JSON, gathered at most once per `FRESH`; callers meanwhile wait
    /// for the one gathering.
    pub(crate) async fn cluster(&self, seat: &Arc<Seat>) -> Bytes {
        let mut latest = self.latest.lock().await;
        if let Some((at, view)) = &*latest
            && at.elapsed() < FRESH
        {
            return view.clone();
        }
        let view: Bytes = serde_json::to_vec(&gather(seat.clone()).await)
            .expect("a cluster view is plain JSON")
            .into();
        *latest = Some((Instant::now(), view.clone()));
        view
    }
}

/// What `GET /console/cluster` answers.
#[derive(Debug, Serialize)]
struct Cluster {
    /// The node serving the console (its name in logs).
    served_by: String,
    /// Whether the roles are elected (on etcd) rather than fixed.
    elected: bool,
    /// The master's name, when known.
    master: Option<String>,
    /// Why the view is partial, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// When this was gathered, in milliseconds since the Unix epoch.
    at_ms: u64,
    nodes: Vec<Card>,
}

/// One node as the console shows it.
#[derive(Debug, Serialize)]
struct Card {
    name: String,
    /// Where the cluster reaches it (none: a master by configuration, which knows no URL of
    /// its own).
    url: Option<String>,
    /// Whether it is the node serving the console.
    here: bool,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Its own `GET /health`.
    health: Option<Value>,
    /// How the master sees it (its entry in the master's `secondaries`).
    standing: Option<Value>,
    /// Its last messages.
    last: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct Entry {
    seq: u64,
    msg: Value,
}

/// Where a node is read.
#[derive(Debug, Clone)]
enum Reach {
    /// The node serving the console: called in process.
    Here,
    At(String),
}

/// A node to show: its name, where it is read, and its health when already read.
struct Known {
    name: String,
    url: Option<String>,
    reach: Reach,
    health: Option<Result<Value, String>>,
}

async fn gather(seat: Arc<Seat>) -> Cluster {
    let node = seat.node();
    let own = get(&seat, &Reach::Here, "/health").await;
    let own_role_master = node.role() == Role::Master;
    let mut note = None;
    let mut master_name = None;
    let mut known = Vec::new();
    if let Some(about) = seat.election() {
        master_name = if own_role_master {
            Some(about.member.clone())
        } else {
            seat.master().map(|master| master.name)
        };
        for (name, url) in &about.members {
            let here = *name == about.member;
            let reach = if here { Reach::Here } else { Reach::At(url.clone()) };
            let health = here.then(|| own.clone());
            known.push(Known { name: name.clone(), url: Some(url.clone()), reach, health });
        }
    } else if own_role_master {
        master_name = Some(node.name().to_owned());
        let secondaries = own.as_ref().map(secondary_urls).unwrap_or_default();
        known.push(Known {
            name: node.name().to_owned(),
            url: None,
            reach: Reach::Here,
            health: Some(own.clone()),
        });
        known.extend(secondaries.into_iter().map(Known::by_url));
    } else if let Some(master) = seat.master() {
        let health = get(&seat, &Reach::At(master.url.clone()), "/health").await;
        master_name = Some(master.name.clone());
        match &health {
            Ok(health) => {
                let secondaries = secondary_urls(health);
                if secondaries.is_empty() {
                    note = Some("the master lists no secondaries".to_owned());
                }
                known.push(Known::by_url(master.url.clone()).named(master.name.clone()));
                known.extend(secondaries.into_iter().map(Known::by_url));
            }
            Err(why) => {
                note = Some(format!(
                    "the master ({}) does not answer ({why}): only this node is shown besides it",
                    master.url
                ));
                known.push(Known::by_url(master.url.clone()).named(master.name.clone()));
                known.push(Known::here(node.name(), own.clone()));
            }
        }
        if let Some(card) = known.first_mut() {
            card.health = Some(health);
        }
    } else {
        note = Some(
            "this secondary does not know its master: start it with MASTER_URL to see the whole \
             cluster here"
                .to_owned(),
        );
        known.push(Known::here(node.name(), own.clone()));
    }
    let tasks: Vec<_> = known
        .into_iter()
        .map(|known| {
            let seat = seat.clone();
            async move { card(&seat, known).await }
        })
        .collect();
    let mut nodes = probe::join_all(tasks.into_iter()).await;
    let standings: Vec<Value> = nodes
        .iter()
        .filter_map(|card| card.health.as_ref())
        .find(|health| health["role"] == "master")
        .and_then(|health| health["secondaries"].as_array().cloned())
        .unwrap_or_default();
    for card in &mut nodes {
        card.standing = standings
            .iter()
            .find(|standing| card.url.as_deref().is_some_and(|url| standing["url"] == url))
            .cloned();
    }
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let elected = seat.election().is_some();
    Cluster { served_by: node.name().to_owned(), elected, master: master_name, note, at_ms, nodes }
}

impl Known {
    /// A node known by its URL only (a secondary in its master's list): named by its
    /// `host:port`.
    fn by_url(url: String) -> Self {
        let name = url.trim_start_matches("http://").to_owned();
        Self { name, url: Some(url.clone()), reach: Reach::At(url), health: None }
    }

    fn here(name: &str, health: Result<Value, String>) -> Self {
        Self { name: name.to_owned(), url: None, reach: Reach::Here, health: Some(health) }
    }

    fn named(self, name: String) -> Self {
        Self { name, ..self }
    }
}

/// The URLs of the secondaries a master's `/health` lists.
fn secondary_urls(health: &Value) -> Vec<String> {
    let listed = health["secondaries"].as_array().map(Vec::as_slice).unwrap_or_default();
    listed.iter().filter_map(|s| s["url"].as_str()).map(str::to_owned).collect()
}

/// A node's card: its health (read now unless known), then its last messages.
async fn card(seat: &Seat, known: Known) -> Card {
    let Known { name, url, reach, health } = known;
    let health = match health {
        Some(health) => health,
        None => get(seat, &reach, "/health").await,
    };
    let here = matches!(reach, Reach::Here);
    let health = match health {
        Ok(health) => health,
        Err(error) => {
            let (health, standing, last) = (None, None, Vec::new());
            return Card {
                name,
                url,
                here,
                reachable: false,
                error: Some(error),
                health,
                standing,
                last,
            };
        }
    };
    let count = health["count"].as_u64().unwrap_or(0);
    let from = count.saturating_sub(LAST_MESSAGES - 1).max(1);
    let (last, error) =
        match get(seat, &reach, &format!("/messages?from={from}&limit={LAST_MESSAGES}")).await {
            Ok(page) => (entries(from, &page), None),
            Err(why) => (Vec::new(), Some(format!("its messages could not be read: {why}"))),
        };
    Card { name, url, here, reachable: true, error, health: Some(health), standing: None, last }
}

/// The entries of a page read from `from`.
fn entries(from: u64, page: &Value) -> Vec<Entry> {
    let messages = page["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    (from..).zip(messages).map(|(seq, msg)| Entry { seq, msg: msg.clone() }).collect()
}

/// `GET path` of a node, as JSON.
async fn get(seat: &Seat, reach: &Reach, path: &str) -> Result<Value, String> {
    let (status, body) = match reach {
        Reach::At(base) => probe::fetch(&format!("{}{path}", base.trim_end_matches('/')), ASK_FOR)
            .await
            .map_err(|e| e.to_string())?,
        Reach::Here => {
            let node = seat.node();
            // As a client would send it: components read the authority from `Host`.
            let request = http::Request::get(path)
                .header(http::header::HOST, node.config().listen.to_string())
                .body(Bytes::new())
                .expect("a GET of a fixed path is a valid request");
            let annotated = seat.annotates(&request.clone().into_parts().0);
            let mut response = node.handle(request).await;
            if annotated {
                response = seat.annotate(&node, response).await;
            }
            let status = response.status().as_u16();
            let body = tokio::time::timeout(ASK_FOR, response.into_body().collect())
                .await
                .map_err(|_| format!("no answer within {} ms", ASK_FOR.as_millis()))?
                .map_err(|e| format!("its answer broke off: {e}"))?
                .to_bytes();
            (status, body)
        }
    };
    probe::json_answer(path, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_numbered_from_where_the_page_starts() {
        let page = serde_json::json!({"messages": ["a", "b"], "next": 9});
        let entries = entries(7, &page);
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(entries[1].msg, "b");
        assert!(super::entries(1, &serde_json::json!({"error": "x"})).is_empty());
    }

    #[test]
    fn a_masters_health_names_its_secondaries() {
        let health = serde_json::json!({"role": "master", "secondaries": [
            {"url": "http://a:8001", "status": "healthy"}, {"status": "odd"}, {"url": "http://b:8002"}
        ]});
        assert_eq!(secondary_urls(&health), ["http://a:8001", "http://b:8002"]);
        assert!(secondary_urls(&serde_json::json!({"role": "secondary"})).is_empty());
    }
}
