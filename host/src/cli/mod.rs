//! The `replog` command line: arguments into configuration (`args`), then the command run.

mod args;
mod node;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use std::sync::Arc;

use tokio::sync::watch;

use self::args::{
    AppendArgs, Cli, Command, ComposeArgs, ElectedPlan, K8sArgs, LogFormat, MakeSecretArgs,
    ProbeArgs, RunArgs, StatusArgs, TailArgs,
};
use crate::client;
use crate::cluster;
use crate::config::NodeConfig;
use crate::deploy::{self, compose, k8s, swarm};
use crate::elected::{self, Elected, RolePlan};
use crate::election::{Candidate, Election};
use crate::node::{CompiledComponent, Node};
use crate::privileges::{PrivilegesLeft, RunAs};
use crate::reload::Reloader;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::seat::{ElectionAbout, Seat};
use crate::secret::ClusterSecret;
use crate::server::{self, Port};

/// Parses the command line, runs the command, and turns errors into a message and exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` leaves standard output to the component it runs.
    let logs_to_stdout = !matches!(
        cli.command,
        Command::Run(_) | Command::Status(_) | Command::Append(_) | Command::Tail(_)
    );
    init_tracing(logs_to_stdout, cli.log_format);
    // Reading the configuration reads the cluster secret, which may need privileges that
    // `--run-as` gives up: all of it happens first, on this one thread.
    let task = match Task::prepare(cli.command) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `replog compose`: the Compose file or the swarm stack, to write where `args` says.
fn compose_file(args: &ComposeArgs) -> anyhow::Result<Task> {
    let topology = args.topology.topology()?;
    let (text, default) = if args.swarm {
        let options = swarm::Options {
            image: &args.image,
            etcd_image: &args.etcd_image,
            secret_name: &args.secret_name,
            replication_timeout_ms: args.replication_timeout_ms,
        };
        (swarm::render(&topology, &options)?, "replog-stack.yml")
    } else {
        let options = compose::Options {
            image: &args.image,
            components_dir: &args.components_dir,
            replication_timeout_ms: args.replication_timeout_ms,
            etcd_image: args.failover.then_some(args.etcd_image.as_str()),
        };
        (compose::render(&topology, &options)?, "docker-compose.yml")
    };
    Ok(Task::Write { path: output(args.output.as_deref().unwrap_or(default.as_ref())), text })
}

/// `replog k8s`: the manifests, to write where `args` says.
fn k8s_manifests(args: &K8sArgs) -> anyhow::Result<Task> {
    let options = k8s::Options {
        name: &args.name,
        replicas: args.replicas,
        image: &args.image,
        etcd_image: &args.etcd_image,
        etcd_endpoints: args.etcd_endpoints.as_deref(),
        secret_name: &args.secret_name,
        storage: &args.storage,
        storage_class: args.storage_class.as_deref(),
        replication_timeout_ms: args.replication_timeout_ms,
    };
    Ok(Task::Write { path: output(&args.output), text: k8s::render(&options)? })
}

/// `-o FILE`: `None` for `-`, standard output.
fn output(path: &Path) -> Option<PathBuf> {
    (path.as_os_str() != "-").then(|| path.to_owned())
}

/// A command with its configuration read and checked, ready to run.
enum Task {
    Serve {
        nodes: Vec<NodeConfig>,
        runtime: RuntimeConfig,
    },
    Elected {
        plan: Box<ElectedPlan>,
        runtime: RuntimeConfig,
    },
    Run(RunArgs),
    /// A file to write (`None`: standard output), the text checked and made already.
    Write {
        path: Option<PathBuf>,
        text: String,
    },
    Probe(ProbeArgs),
    MakeSecret(MakeSecretArgs),
    Status(StatusArgs),
    Append(AppendArgs),
    Tail(TailArgs),
}

impl Task {
    fn prepare(command: Command) -> anyhow::Result<Self> {
        match command {
            Command::Cluster(args) => {
                let nodes = args.nodes()?;
                let runtime = args.node.runtime(nodes[0].limits)?;
                tracing::info!(
                    "cluster secret: {}",
                    if args.secret.cluster_secret_file.is_some() {
                        "from CLUSTER_SECRET_FILE"
                    } else if std::env::var_os("CLUSTER_SECRET").is_some() {
                        "from CLUSTER_SECRET"
                    } else {
                        "made for this run (every node of it has it)"
                    }
                );
                Ok(Task::Serve { nodes, runtime })
            }
            Command::Serve(args) if args.elected() => {
                let plan = args.elected_plan()?;
                let runtime = args.node.runtime(plan.secondary.limits)?;
                if let Some(spec) = &args.run_as {
                    let run_as: RunAs = spec.parse()?;
                    run_as.switch()?;
                    tracing::info!(%run_as, "switched user");
                }
                Ok(Task::Elected { plan: Box::new(plan), runtime })
            }
            Command::Serve(args) => {
                let node = args.node()?;
                let runtime = args.node.runtime(node.limits)?;
                if let Some(spec) = &args.run_as {
                    let run_as: RunAs = spec.parse()?;
                    match run_as.switch()? {
                        PrivilegesLeft::ReadAnyFile => tracing::info!(
                            %run_as,
                            "switched user, keeping only the capability to read any file (for \
                             component builds only their owner may read)"
                        ),
                        PrivilegesLeft::Nothing => tracing::info!(%run_as, "switched user"),
                    }
                }
                Ok(Task::Serve { nodes: vec![node], runtime })
            }
            Command::Run(args) => Ok(Task::Run(args)),
            Command::Compose(args) => compose_file(&args),
            Command::K8s(args) => k8s_manifests(&args),
            Command::Probe(args) => Ok(Task::Probe(args)),
            Command::MakeSecret(args) => Ok(Task::MakeSecret(args)),
            Command::Status(args) => Ok(Task::Status(args)),
            Command::Append(args) => Ok(Task::Append(args)),
            Command::Tail(args) => Ok(Task::Tail(args)),
        }
    }

    async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Task::Serve { nodes, runtime } => {
                serve_until_stopped(Runtime::new(runtime)?, nodes).await
            }
            Task::Elected { plan, runtime } => serve_elected(Runtime::new(runtime)?, *plan).await,
            Task::Run(args) => {
                let code = crate::command::run(&args.component, &args.args).await?;
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
            }
            Task::Write { path: None, text } => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Task::Write { path: Some(path), text } => {
                deploy::write(&path, &text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Task::MakeSecret(args) => {
                let file = args.file.display();
                if ClusterSecret::make_file_once(&args.file)
                    .with_context(|| format!("cannot make the cluster secret {file}"))?
                {
                    eprintln!("made a new cluster secret at {file} (mode 0600)");
                } else {
                    eprintln!("kept the cluster secret at {file}: one is there already");
                }
                Ok(ExitCode::SUCCESS)
            }
            Task::Status(args) => {
                let timeout = Duration::from_millis(args.timeout_ms);
                let (report, verdict) = crate::status::status(&args.master, timeout).await;
                print!("{report}");
                Ok(verdict.into())
            }
            Task::Append(args) => {
                let node = client::Node::parse(&args.url).map_err(|e| anyhow::anyhow!("{e}"))?;
                let messages = match args.messages.is_empty() {
                    false => args.messages,
                    true => read_lines().await?,
                };
                let options = client::AppendOptions {
                    w: args.w,
                    id: args.id,
                    timeout: Duration::from_millis(args.timeout_ms),
                    retry_for: Duration::from_millis(args.retry_for_ms),
                };
                let mut connection = client::Connection::new(node);
                let written =
                    client::append(&mut connection, messages, &options, &mut std::io::stdout())
                        .await;
                Ok(ended(written))
            }
            Task::Tail(args) => {
                let nodes = args
                    .urls
                    .iter()
                    .map(|url| client::Node::parse(url))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let options = client::TailOptions {
                    from: args.from.unwrap_or(0),
                    follow: args.follow,
                    json: args.json,
                    committed: !args.uncommitted,
                    wait: Duration::from_millis(args.wait_ms.min(30_000)),
                };
                let mut stdout = std::io::stdout();
                let printed = client::tail(nodes, options, &mut stdout);
                let outcome = tokio::select! {
                    outcome = printed => outcome,
                    () = client::output_closed(), if args.follow => Err(client::Ended::ReaderGone),
                };
                Ok(ended(outcome))
            }
            Task::Probe(args) => {
                let timeout = Duration::from_millis(args.timeout_ms);
                match crate::probe::get(&args.url, timeout).await {
                    Ok(200) => Ok(ExitCode::SUCCESS),
                    Ok(status) => {
                        eprintln!("{} answered {status}", args.url);
                        Ok(ExitCode::FAILURE)
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", args.url);
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    }
}

/// A client command's exit: 0 when it did all it was asked, or when the reader of its output
/// went away (as `head` does: the Unix way); 1 with why on stderr otherwise.
fn ended(outcome: client::Outcome<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(client::Ended::ReaderGone) => ExitCode::SUCCESS,
        Err(why @ client::Ended::Failed(_)) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The lines of standard input, the messages of `replog append` without arguments (empty
/// lines are skipped: a message is never empty).
async fn read_lines() -> anyhow::Result<Vec<String>> {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut messages = Vec::new();
    while let Some(line) = lines.next_line().await.context("reading standard input")? {
        if !line.is_empty() {
            messages.push(line);
        }
    }
    Ok(messages)
}

async fn serve_until_stopped(runtime: Runtime, nodes: Vec<NodeConfig>) -> anyhow::Result<ExitCode> {
    let running = cluster::start(&runtime, nodes).await?;
    let nodes: Vec<_> = running.nodes().iter().map(|(node, _)| node.clone()).collect();
    let reloader = Reloader::start(&runtime, &nodes)?;
    let mut hangup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: looking at every component file again");
                reloader.reload_all();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    drop(reloader);
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Serves an elected node (`--role auto`) until SIGINT or SIGTERM: it starts as a secondary,
/// and follows the election; on stopping, a master resigns first, so that another node takes
/// over at once.
async fn serve_elected(runtime: Runtime, plan: ElectedPlan) -> anyhow::Result<ExitCode> {
    let compile = |config: &NodeConfig| {
        CompiledComponent::load(runtime.engine(), &config.component)
            .with_context(|| format!("loading {}", config.component.display()))
    };
    let master = RolePlan { component: compile(&plan.master)?, config: plan.master };
    let secondary = RolePlan { component: compile(&plan.secondary)?, config: plan.secondary };
    let node = Node::new(&runtime, secondary.config.clone(), secondary.component.clone()).await?;
    let name = node.name().to_owned();
    let listener = server::bind(&name, node.config().listen).await?;
    let metrics = match node.config().metrics_listen {
        Some(addr) => Some(server::bind(&name, addr).await?),
        None => None,
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    let about = ElectionAbout {
        cluster: plan.cluster_name.clone(),
        member: plan.me.name.clone(),
        members: plan.members.iter().map(|m| (m.name.clone(), m.url.clone())).collect(),
    };
    let seat = Arc::new(Seat::elected(Arc::new(node), about));
    let (stop, stopped) = watch::channel(false);
    let stop_with = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(server::serve(seat.clone(), listener, Port::Clients, stop_with(stopped.clone())));
    if let Some(metrics) = metrics {
        servers.spawn(server::serve(
            seat.clone(),
            metrics,
            Port::Metrics,
            stop_with(stopped.clone()),
        ));
    }
    let etcd = crate::election::Etcd::new(plan.etcd_endpoints.clone());
    let election = Election::new(etcd, &plan.cluster_name, plan.timings);
    tracing::info!(
        node = %name,
        members = plan.members.len(),
        etcd = %plan.etcd_endpoints.join(","),
        key = election.key(),
        "listening on http://{addr}, elected through etcd: a secondary until elected"
    );
    tracing::info!("console: {}", crate::cluster::console_url(addr));
    let elected = Elected {
        me: Candidate { name: plan.me.name.clone(), url: plan.me.url.clone() },
        members: plan.members,
        election,
        timings: plan.timings,
        master,
        secondary,
        runtime: runtime.clone(),
    };
    let following = tokio::spawn(elected::follow(elected, seat.clone(), stopped.clone()));
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: resigning if master, finishing requests in flight");
    let _ = stop.send(true);
    let _ = following.await;
    while servers.join_next().await.is_some() {}
    seat.node().stop_replication().await;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(to_stdout: bool, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, terminal) = if to_stdout {
        (BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal())
    } else {
        (BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal())
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(terminal).init(),
        // One object per line, the event's fields at its top level beside `timestamp`,
        // `level` and `message`.
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
    }
}
