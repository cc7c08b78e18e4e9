//! Switching to an unprivileged user once the files only root may read have been read.
//!
//! A Compose secret is a bind mount of a host file that keeps the file's owner and mode
//! (`0600`, owned by whoever ran `replog compose`), and Compose v1 cannot change that, so a
//! container started as the image's unprivileged user could not read it. The containers
//! therefore start as root, read the secret, and switch to the unprivileged user (`--run-as`)
//! before they start a thread, open the data directory or take a request.

use std::fmt;
use std::str::FromStr;

/// A `UID:GID` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
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
    /// Becomes `self` for good: supplementary groups dropped, then the group, then the user.
    /// Already running as `self` is fine. Call it before any thread starts: the switch must
    /// apply to the whole process.
    pub fn switch(self) -> Result<(), PrivilegeError> {
        // SAFETY: plain system calls without pointers (setgroups gets an empty list).
        let (uid, euid, gid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
        if uid == self.uid && euid == self.uid && gid == self.gid {
            return Ok(());
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
            check("setuid", libc::setuid(self.uid))?;
        }
        Ok(())
    }
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
