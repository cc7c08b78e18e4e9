//! Switching to an unprivileged user once the files only root may read have been read.
//!
//! A Compose secret is a bind mount of a host file that keeps the file's owner and mode
//! (`0600`, owned by whoever ran `replog compose`), and Compose v1 cannot change that, so a
//! container started as the image's unprivileged user could not read it. The containers
//! therefore start as root, read the secret, and switch to the unprivileged user (`--run-as`)
//! before they start a thread, open the data directory or take a request.
//!
//! One privilege may stay: reading files whatever their mode (`CAP_DAC_READ_SEARCH`), where
//! the container was given it. `cargo component build` writes its components readable by
//! their owner only, and a node must read a new build to swap it in long after it switched.
//! It can read, not write, and nothing else of root's is kept.

use std::fmt;
use std::str::FromStr;

/// A `UID:GID` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// What the process may still do after the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrivilegesLeft {
    /// Read any file (`CAP_DAC_READ_SEARCH`).
    ReadAnyFile,
    /// Nothing: the container did not grant that capability.
    Nothing,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivilegeError {
    #[error("--run-as wants UID:GID in numbers (e.g. 65534:65534), got {0:?}")]
    Parse(String),
    #[error("--run-as {0}: only root can switch users, and this process runs as uid {1}")]
    NotRoot(RunAs, u32),
    #[error("--run-as {0}: {1} failed: {2}")]
    Switch(RunAs, &'static str, std::io::Error),
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl FromStr for RunAs {
    type Err = PrivilegeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let (uid, gid) = text.split_once(':')?;
            Some(Self { uid: uid.trim().parse().ok()?, gid: gid.trim().parse().ok()? })
        };
        parse().ok_or_else(|| PrivilegeError::Parse(text.to_owned()))
    }
}

impl RunAs {
    /// Becomes `self` for good: supplementary groups dropped, then the group, then the user,
    /// keeping only the capability to read any file if the process has it. Already running as
    /// `self` is fine. Call it before any thread starts: the switch and capabilities must
    /// apply to the whole process.
    pub(crate) fn switch(self) -> Result<PrivilegesLeft, PrivilegeError> {
        // SAFETY: plain system calls without pointers (setgroups gets an empty list).
        let (uid, euid, gid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
        if uid == self.uid && euid == self.uid && gid == self.gid {
            return Ok(PrivilegesLeft::Nothing);
        }
        if euid != 0 {
            return Err(PrivilegeError::NotRoot(self, euid));
        }
        let check = |what, result: libc::c_int| {
            if result == 0 {
                Ok(())
            } else {
                Err(PrivilegeError::Switch(self, what, std::io::Error::last_os_error()))
            }
        };
        // SAFETY: as above.
        unsafe {
            check("setgroups", libc::setgroups(0, std::ptr::null()))?;
            check("setgid", libc::setgid(self.gid))?;
            // Without this, leaving uid 0 clears every capability.
            check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            check("setuid", libc::setuid(self.uid))?;
            check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
        }
        if set_capabilities(1 << CAP_DAC_READ_SEARCH).is_ok() {
            return Ok(PrivilegesLeft::ReadAnyFile);
        }
        set_capabilities(0).map_err(|e| PrivilegeError::Switch(self, "capset", e))?;
        Ok(PrivilegesLeft::Nothing)
    }
}

/// `CAP_DAC_READ_SEARCH` in `linux/capability.h`.
const CAP_DAC_READ_SEARCH: u32 = 2;
/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Makes `caps` (capabilities 0 to 31, as bits) this thread's effective and permitted sets,
/// and nothing inheritable: every other capability is gone for good.
fn set_capabilities(caps: u32) -> std::io::Result<()> {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: caps, permitted: caps, inheritable: 0 }, CapData::default()];
    // SAFETY: `capset` reads one header and, for version 3, two data structs, which live
    // until it returns.
    let result =
        unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_and_gid_are_read_as_numbers() {
        assert_eq!("65534:65534".parse::<RunAs>().unwrap(), RunAs { uid: 65534, gid: 65534 });
        for bad in ["nobody", "1:", ":1", "1:2:3", "-1:0"] {
            assert!(bad.parse::<RunAs>().is_err(), "{bad}");
        }
    }
}
