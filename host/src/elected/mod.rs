//! A node of an elected cluster (`--role auto`): it starts as a secondary and changes role as
//! etcd's leader key says, in the running process (`Node::succeed` hands its log to the other
//! role's state and component; the `Seat` serves the successor).
//!
//! The loop (`follow`), every `renew_every`:
//! - **Leading**: renew the lease; each confirmed renewal lets the master act until its renew
//!   deadline (`Sequencer::hold_lease_until`), which every write and every acknowledgement is
//!   checked against, so a master that cannot renew, or was paused, stops acknowledging before
//!   its key can lapse. A lapsed lease, or no renewal within the deadline: back to secondary.
//! - **Following**: read the leader key. With none, campaign if this node may
//!   (`election::may_campaign`: no master answers, no reachable member is ahead, and with the
//!   members it reaches it makes a majority, without which it could not recover anyway). Won:
//!   become master for the key's create revision as its epoch, recover from a majority, serve.
//!
//! Safety never rests on the lease: the epoch (etcd's revision, above every earlier master's)
//! is what the secondaries check on every request.

mod members;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::watch;

pub use self::members::{Member, Members};
use crate::config::{NodeConfig, Role};
use crate::election::{Campaign, Candidate, Election, Leader, Term, Timings, may_campaign};
use crate::node::{self, CompiledComponent, Node};
use crate::reload::Reloader;
use crate::runtime::Runtime;
use crate::seat::{Master, Seat};

/// Bound on asking a member where its log stands, before a campaign.
const ASK_MEMBER: Duration = Duration::from_millis(500);

/// A role an elected node may take: its configuration and its component.
#[derive(Clone)]
pub struct RolePlan {
    /// The node's configuration in that role (a master's without its elected epoch).
    pub config: NodeConfig,
    /// The role's component.
    pub component: CompiledComponent,
}

/// Everything an elected node needs besides its seat.
pub struct Elected {
    /// Who this node is, as the leader key names it.
    pub me: Candidate,
    /// Every member, this one included.
    pub members: Members,
    /// The election, on etcd.
    pub election: Election,
    /// Its timings.
    pub timings: Timings,
    /// The node as master.
    pub master: RolePlan,
    /// The node as secondary.
    pub secondary: RolePlan,
    /// The runtime its nodes run in (to compile a newer build, and watch for one).
    pub runtime: Runtime,
}

impl Elected {
    /// Whether `node` is one of the members, at the URL the members know it by.
    fn is_member(&self, node: &Candidate) -> bool {
        self.members.get(&node.name).is_some_and(|member| member.url == node.url)
    }
}

/// Where this node stands in the election.
enum Standing {
    /// Not master: following the leader etcd names, if any.
    Following(Option<Leader>),
    /// Master for this term.
    Leading(Term),
}

/// Follows the election until `stop` says so, changing the role of the node in `seat`. On
/// stopping, a master resigns (its key deleted, its lease revoked), so that another node need
/// not wait for the lease to lapse.
pub async fn follow(mut elected: Elected, seat: Arc<Seat>, mut stop: watch::Receiver<bool>) {
    let mut standing = Standing::Following(None);
    let mut last_error: Option<String> = None;
    // A new build of the seated node's role is swapped in as it serves (see `reload`); a
    // change of role starts watching the other role's files.
    let mut reloader = watch_builds(&elected, &seat.node());
    loop {
        tokio::select! {
            () = tokio::time::sleep(elected.timings.renew_every) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        let seated = seat.node();
        let outcome = match standing {
            Standing::Leading(ref mut term) => lead(&mut elected, &seat, term).await,
            Standing::Following(ref leader) => {
                follow_once(&mut elected, &seat, leader.as_ref()).await
            }
        };
        if !Arc::ptr_eq(&seated, &seat.node()) {
            reloader = watch_builds(&elected, &seat.node());
        }
        match outcome {
            Ok(Some(next)) => {
                seat.follow_master(match &next {
                    // Never itself: a key of its own it does not hold (left by a process
                    // before this one) names no master to forward to.
                    Standing::Following(leader) => leader
                        .as_ref()
                        .filter(|l| l.node.name != elected.me.name)
                        .map(|l| master(&l.node, l.epoch)),
                    Standing::Leading(term) => Some(master(&elected.me, term.epoch)),
                });
                standing = next;
            }
            Ok(None) => {}
            Err(error) => {
                // Said once per new error, not every tick while etcd is away.
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(node = %elected.me.name, %error, "election: retrying");
                    last_error = Some(error);
                }
                continue;
            }
        }
        last_error = None;
    }
    drop(reloader);
    if let Standing::Leading(term) = standing {
        // Acknowledge nothing more before giving the key up: the next master may be elected
        // the moment it is gone, while this process still drains its requests.
        if let Some(sequencer) = seat.node().state().sequencer() {
            sequencer.hold_lease_until(Instant::now());
        }
        let epoch = term.epoch;
        match elected.election.resign(term).await {
            Ok(()) => tracing::info!(node = %elected.me.name, epoch, "resigned as master"),
            Err(error) => {
                tracing::warn!(node = %elected.me.name, epoch, %error, "could not resign")
            }
        }
    }
}

/// The master `node` of `epoch`, as a seat shows it.
fn master(node: &Candidate, epoch: u64) -> Master {
    Master { name: node.name.clone(), url: node.url.clone(), epoch }
}

/// One tick as master: renew, and step down when the term is over or cannot be kept.
async fn lead(
    elected: &mut Elected,
    seat: &Seat,
    term: &mut Term,
) -> Result<Option<Standing>, String> {
    let renewal =
        tokio::time::timeout(elected.timings.renew_deadline, elected.election.renew(term));
    let why = match renewal.await {
        Ok(Ok(true)) => {
            let now = Instant::now();
            if let Some(sequencer) = seat.node().state().sequencer() {
                sequencer.hold_lease_until(now + term.clock.left_at(now));
            }
            return Ok(None);
        }
        Ok(Ok(false)) => "its lease has lapsed".to_owned(),
        Ok(Err(error)) if term.clock.holds_at(Instant::now()) => return Err(error.to_string()),
        Ok(Err(error)) => format!("no renewal within the renew deadline ({error})"),
        Err(_) if term.clock.holds_at(Instant::now()) => return Ok(None),
        Err(_) => "no renewal within the renew deadline (etcd did not answer)".to_owned(),
    };
    tracing::warn!(node = %elected.me.name, epoch = term.epoch, "stepping down: {why}");
    become_secondary(elected, seat, None).await;
    Ok(Some(Standing::Following(None)))
}

/// One tick as secondary: note the leader, or campaign when there is none and this node may.
async fn follow_once(
    elected: &mut Elected,
    seat: &Seat,
    known: Option<&Leader>,
) -> Result<Option<Standing>, String> {
    if seat.node().role() == Role::Master {
        // A master without a term (a failed change back): try again.
        become_secondary(elected, seat, None).await;
    }
    let leader = elected.election.leader().await.map_err(|e| e.to_string())?;
    if let Some(leader) = leader.as_ref().filter(|l| !elected.is_member(&l.node)) {
        // Not a member's key (a forged or stale one): nothing follows it, writes wait.
        seat.follow_master(None);
        return Err(format!(
            "the leader key names {} at {}, which is not one of the members: ignored, no \
             writes follow it (delete the key {} if it stays)",
            leader.node.name,
            leader.node.url,
            elected.election.key()
        ));
    }
    if let Some(leader) = leader {
        if known != Some(&leader) {
            tracing::info!(
                node = %elected.me.name,
                master = %leader.node.name,
                url = %leader.node.url,
                epoch = leader.epoch,
                "following the master etcd names"
            );
        }
        return Ok(Some(Standing::Following(Some(leader))));
    }
    if !may_run(elected, seat).await {
        return Ok(Some(Standing::Following(None)));
    }
    // A new build of the master's component is compiled now, before the lease is held: the
    // seconds a compile takes would otherwise pass without renewals, and the lease with them.
    newest_build(&elected.runtime, &mut elected.master).await;
    match elected.election.campaign(&elected.me).await.map_err(|e| e.to_string())? {
        Campaign::Lost(leader) => Ok(Some(Standing::Following(Some(leader)))),
        Campaign::Won(term) => {
            tracing::info!(node = %elected.me.name, epoch = term.epoch, "elected master");
            if become_master(elected, seat, &term).await {
                return Ok(Some(Standing::Leading(term)));
            }
            // Holding the key without serving would keep every other node from taking over;
            // and the secondary it was is retired: a fresh one takes its seat.
            become_secondary(elected, seat, None).await;
            let epoch = term.epoch;
            if let Err(error) = elected.election.resign(term).await {
                tracing::warn!(node = %elected.me.name, epoch, %error, "could not resign");
            }
            Ok(Some(Standing::Following(None)))
        }
    }
}

/// Whether this node may campaign now: the members it reaches make a majority with it, none
/// of them is an open master, none is ahead of it.
async fn may_run(elected: &Elected, seat: &Seat) -> bool {
    let last = seat.node().state().log().last();
    let mut asking = tokio::task::JoinSet::new();
    for member in elected.members.others(&elected.me.name) {
        let url = member.url.clone();
        asking.spawn(async move { ask(&url).await });
    }
    let mut heard: Vec<Heard> = Vec::new();
    while let Some(answer) = asking.join_next().await {
        heard.extend(answer.ok().flatten());
    }
    let majority = 1 + heard.len() >= elected.members.majority();
    let master_answers =
        heard.iter().any(|h| h.role == "master" && h.state.as_deref() == Some("open"));
    let positions: Vec<(u64, u64)> =
        heard.iter().filter_map(|h| h.last.as_ref()).map(|p| (p.epoch, p.seq)).collect();
    majority && may_campaign((last.epoch, last.seq), &positions, master_answers)
}

/// What a member's `GET /health` says of its role and its log's end.
#[derive(Debug, Deserialize)]
struct Heard {
    role: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    last: Option<HeardPosition>,
}

#[derive(Debug, Deserialize)]
struct HeardPosition {
    seq: u64,
    epoch: u64,
}

/// Asks the member at `url` where it stands; none when it does not answer in time.
async fn ask(url: &str) -> Option<Heard> {
    let (status, body) = crate::probe::fetch(&format!("{url}/health"), ASK_MEMBER).await.ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_slice(&body).ok()
}

/// Hands the seated node's log to a master elected for `term`, and starts its recovery; false
/// when the master's component could not be set up.
async fn become_master(elected: &mut Elected, seat: &Seat, term: &Term) -> bool {
    let config = NodeConfig { elected_epoch: Some(term.epoch), ..elected.master.config.clone() };
    let component = newest_build(&elected.runtime, &mut elected.master).await;
    let node = seat.node();
    match node.succeed(config, component, None).await {
        Ok(master) => {
            if let Some(sequencer) = master.state().sequencer() {
                let now = Instant::now();
                sequencer.hold_lease_until(now + term.clock.left_at(now));
            }
            let master = Arc::new(master);
            seat.replace(master.clone());
            master.start_replication();
            true
        }
        Err(error) => {
            tracing::error!(node = %elected.me.name, %error, "could not become master: resigning");
            false
        }
    }
}

/// Hands the seated node's log to a secondary (an old master fenced by `fenced_by`).
async fn become_secondary(elected: &mut Elected, seat: &Seat, fenced_by: Option<u64>) {
    let node = seat.node();
    let config = elected.secondary.config.clone();
    let component = newest_build(&elected.runtime, &mut elected.secondary).await;
    match node.succeed(config, component, fenced_by).await {
        Ok(secondary) => {
            seat.replace(Arc::new(secondary));
        }
        Err(error) => {
            tracing::error!(node = %elected.me.name, %error, "could not become secondary");
        }
    }
}

/// The role's component: the newest build among its files (the one `--components` names
/// first, or a later one), compiled now if it is not the one the plan holds; the plan's when
/// that fails (said in the log).
async fn newest_build(runtime: &Runtime, plan: &mut RolePlan) -> CompiledComponent {
    let config = &plan.config;
    let files: Vec<_> =
        std::iter::once(&config.component).chain(&config.component_candidates).cloned().collect();
    let Some(newest) = crate::components::newest(&files) else { return plan.component.clone() };
    let engine = runtime.engine().clone();
    let current = plan.component.sha256.clone();
    let path = newest.clone();
    // Compiling takes seconds: off the async threads.
    let built = tokio::task::spawn_blocking(move || {
        let bytes = node::read(&path)?;
        if node::sha256(&bytes) == current {
            return Ok(None);
        }
        CompiledComponent::compile(&engine, &path, &bytes).map(Some)
    })
    .await
    .unwrap_or_else(|e| {
        Err(node::LoadError::Compile { path: newest.clone(), reason: e.to_string() })
    });
    match built {
        Ok(Some(component)) => {
            tracing::info!(path = %newest.display(), sha256 = %component.sha256, "a newer build of the role's component");
            plan.component = component;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "the newest build is not usable: the one loaded at start runs")
        }
    }
    plan.component.clone()
}

/// Watches the files of `node`'s role for a new build, and swaps it into that node.
fn watch_builds(elected: &Elected, node: &Arc<Node>) -> Option<Reloader> {
    match Reloader::start(&elected.runtime, std::slice::from_ref(node)) {
        Ok(reloader) => Some(reloader),
        Err(error) => {
            tracing::warn!(node = %elected.me.name, %error, "not watching for new builds");
            None
        }
    }
}
