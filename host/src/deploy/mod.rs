//! What runs a cluster on a container platform, written rather than hand-kept: `replog
//! compose` (one machine, Docker Compose), `replog compose --swarm` (a Docker Swarm stack over
//! several machines) and `replog k8s` (Kubernetes manifests).
//!
//! Each text is written by hand rather than through a YAML library so that it is stable to the
//! byte (the committed `docker-compose.yml` must equal the default output) and reads like a
//! file a person would write. What they share lives here: the image and where things are in
//! it, the unprivileged user, etcd, the members of an elected cluster, and writing a file.

pub(crate) mod compose;
pub(crate) mod k8s;
pub(crate) mod swarm;

use std::io::Write as _;
use std::path::Path;

use crate::config::{ConfigError, Topology};
use crate::elected::Members;

/// The image every generator names unless told another (`REPLOG_IMAGE`): the static host with
/// the components it was built with (see the Dockerfile).
pub(crate) const DEFAULT_IMAGE: &str = "replog:latest";
/// The port a member of an elected cluster, and a fixed-role master, listen on in their
/// containers.
pub(crate) const MEMBER_PORT: u16 = 8000;
/// Where each container keeps its log: a volume of its own.
pub(crate) const DATA_MOUNT: &str = "/data";
/// The unprivileged user and group the containers serve as (`nobody`; the image's `/data` is
/// theirs).
pub(crate) const RUN_AS_ID: u32 = 65534;

/// etcd's own image, for machines that can pull one (`ETCD_IMAGE` names another).
pub(crate) const DEFAULT_ETCD_IMAGE: &str = "gcr.io/etcd-development/etcd:v3.5.17";
/// Where the etcd binary is in that image (and in any image `ETCD_IMAGE` names).
pub(crate) const ETCD_BINARY: &str = "/usr/local/bin/etcd";
/// etcd's client and peer ports.
pub(crate) const ETCD_CLIENT_PORT: u16 = 2379;
pub(crate) const ETCD_PEER_PORT: u16 = 2380;
/// The most etcd members a generated cluster runs: five survive two losses, and more only slow
/// its writes down.
const MOST_ETCD_MEMBERS: usize = 5;

/// How many etcd members go with `members` replog members: as many, up to five (one beside
/// each, so that losing a machine loses one of each and both keep a majority).
pub(crate) fn etcd_members(members: usize) -> usize {
    members.min(MOST_ETCD_MEMBERS)
}

/// The members of an elected cluster of `topology`'s shape: `n1` (on `MASTER_PORT` where ports
/// are published), `n2`, ...: as many as its master and secondaries.
pub(crate) fn member_names(topology: &Topology) -> Vec<String> {
    (1..=topology.delays.len() + 1).map(|i| format!("n{i}")).collect()
}

/// Fewest members an elected cluster has: one can fail and a majority remains.
const FEWEST_MEMBERS: usize = 3;

/// `MEMBERS` for the members called `names`, each reached at `http://{host(name)}:8000`,
/// checked by the rules every elected node applies (at least three, names and URLs unique).
/// `counted_by` is the setting that made them, for the message when there are too few.
pub(crate) fn members(
    names: &[String],
    host: impl Fn(&str) -> String,
    counted_by: &str,
) -> Result<(String, Members), ConfigError> {
    if names.len() < FEWEST_MEMBERS {
        return Err(ConfigError::Invalid(format!(
            "{counted_by} makes {} member(s); an elected cluster needs at least \
             {FEWEST_MEMBERS}, so that one can fail and a majority remains",
            names.len()
        )));
    }
    let text = names
        .iter()
        .map(|name| format!("{name}=http://{}:{MEMBER_PORT}", host(name)))
        .collect::<Vec<_>>()
        .join(",");
    let members = Members::parse(&text)?;
    Ok((text, members))
}

/// etcd's command line for member `name` of the members `names`, where `host` gives the name
/// each is reached by: the same flags in every generated file.
pub(crate) fn etcd_args(
    name: &str,
    names: &[String],
    host: impl Fn(&str) -> String,
    data_dir: &str,
) -> Vec<String> {
    let peer = |name: &str| format!("http://{}:{ETCD_PEER_PORT}", host(name));
    let cluster: Vec<String> = names.iter().map(|n| format!("{n}={}", peer(n))).collect();
    [
        ("--name", name.to_owned()),
        ("--data-dir", data_dir.to_owned()),
        ("--listen-client-urls", format!("http://0.0.0.0:{ETCD_CLIENT_PORT}")),
        ("--advertise-client-urls", format!("http://{}:{ETCD_CLIENT_PORT}", host(name))),
        ("--listen-peer-urls", format!("http://0.0.0.0:{ETCD_PEER_PORT}")),
        ("--initial-advertise-peer-urls", peer(name)),
        ("--initial-cluster", cluster.join(",")),
        ("--initial-cluster-token", "replog-etcd".to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// `items` as a YAML flow sequence of double-quoted strings: `["a", "b"]`.
pub(crate) fn flow_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// `text` as a YAML double-quoted string (JSON's escapes are YAML's).
pub(crate) fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then renamed.
pub(crate) fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_checked_as_the_nodes_check_them() {
        let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let (text, members) = members(&names, |n| format!("{n}.svc"), "N").unwrap();
        assert_eq!(text, "a=http://a.svc:8000,b=http://b.svc:8000,c=http://c.svc:8000");
        assert_eq!(members.majority(), 2);
        let two = &names[..2];
        let error = super::members(two, str::to_owned, "N=2").unwrap_err().to_string();
        assert!(error.starts_with("N=2 makes 2 member(s)"), "{error}");
    }

    #[test]
    fn etcd_goes_one_beside_each_member_up_to_five() {
        assert_eq!((etcd_members(3), etcd_members(5), etcd_members(7)), (3, 5, 5));
        let names: Vec<String> = ["e1", "e2", "e3"].map(str::to_owned).to_vec();
        let args = etcd_args("e2", &names, |n| format!("{n}.x"), "/d").join(" ");
        assert!(args.contains("--advertise-client-urls http://e2.x:2379"), "{args}");
        assert!(args.contains("--initial-advertise-peer-urls http://e2.x:2380"), "{args}");
        let cluster =
            "--initial-cluster e1=http://e1.x:2380,e2=http://e2.x:2380,e3=http://e3.x:2380";
        assert!(args.contains(cluster), "{args}");
    }

    #[test]
    fn strings_are_quoted_as_yaml_reads_them() {
        assert_eq!(flow_list(&["serve", "a \"b\"\\"]), r#"["serve", "a \"b\"\\"]"#);
    }
}
