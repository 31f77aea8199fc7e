//! Coverage of the CIS Debian Linux 12 benchmark: the items of the sections
//! issue 16 names (SSH 5.1, kernel 3.3 and 1.5, files 7.1, accounts and
//! authentication, logging 6.1, auditd 6.2, AIDE 6.3), in our own short words
//! (the benchmark's text is CIS's), and which of them a baseline's rules cover
//! (`cis = [...]` in a rule).
//!
//! Item numbers follow the benchmark's v1.x numbering; an auditor should check
//! them against the edition they use. Nothing here prints.

use super::Loaded;

/// One benchmark section: its name (the rules' `category`), title and items.
pub struct Section {
    pub name: &'static str,
    pub title: &'static str,
    pub items: &'static [(&'static str, &'static str)],
}

pub const BENCHMARK: &str = "CIS Debian Linux 12";

pub const SECTIONS: &[Section] = &[
    Section {
        name: "ssh",
        title: "SSH server (5.1)",
        items: &[
            ("5.1.1", "sshd_config permissions"),
            ("5.1.2", "private host key permissions"),
            ("5.1.3", "public host key permissions"),
            ("5.1.4", "sshd access limited to named users or groups"),
            ("5.1.5", "warning banner"),
            ("5.1.6", "strong ciphers only"),
            ("5.1.7", "idle client timeout"),
            ("5.1.8", "forwarding disabled"),
            ("5.1.9", "GSSAPI authentication disabled"),
            ("5.1.10", "host-based authentication disabled"),
            ("5.1.11", "rhosts ignored"),
            ("5.1.12", "strong key exchange only"),
            ("5.1.13", "short login grace time"),
            ("5.1.14", "log level INFO or VERBOSE"),
            ("5.1.15", "strong MACs only"),
            ("5.1.16", "few authentication tries"),
            ("5.1.17", "few sessions per connection"),
            ("5.1.18", "unauthenticated connections throttled"),
            ("5.1.19", "empty passwords refused"),
            ("5.1.20", "root login disabled"),
            ("5.1.21", "user environment not accepted"),
            ("5.1.22", "PAM enabled"),
        ],
    },
    Section {
        name: "kernel",
        title: "Kernel: network (3.3) and process (1.5) parameters",
        items: &[
            ("1.5.1", "address space layout randomisation"),
            ("1.5.2", "ptrace restricted"),
            ("1.5.3", "core dumps restricted"),
            ("1.5.4", "prelink absent"),
            ("1.5.5", "automatic crash reporting off"),
            ("3.3.1", "IP forwarding off"),
            ("3.3.2", "no redirects sent"),
            ("3.3.3", "bogus ICMP error responses ignored"),
            ("3.3.4", "broadcast ICMP ignored"),
            ("3.3.5", "ICMP redirects refused"),
            ("3.3.6", "secure ICMP redirects refused"),
            ("3.3.7", "reverse path filtering"),
            ("3.3.8", "source-routed packets refused"),
            ("3.3.9", "suspicious packets logged"),
            ("3.3.10", "TCP SYN cookies"),
            ("3.3.11", "IPv6 router advertisements refused"),
        ],
    },
    Section {
        name: "files",
        title: "System files (7.1), home directories (7.2.9-10), cron and at (2.4)",
        items: &[
            ("7.1.1", "/etc/passwd permissions"),
            ("7.1.2", "/etc/passwd- permissions"),
            ("7.1.3", "/etc/group permissions"),
            ("7.1.4", "/etc/group- permissions"),
            ("7.1.5", "/etc/shadow permissions"),
            ("7.1.6", "/etc/shadow- permissions"),
            ("7.1.7", "/etc/gshadow permissions"),
            ("7.1.8", "/etc/gshadow- permissions"),
            ("7.1.9", "/etc/shells permissions"),
            ("7.1.10", "/etc/security/opasswd permissions"),
            ("7.1.11", "world-writable files and directories secured"),
            ("7.1.12", "no unowned files or directories"),
            ("7.1.13", "SUID and SGID files reviewed"),
            ("7.2.9", "interactive users' home directories"),
            ("7.2.10", "users' dot files"),
            ("2.4.1.2", "crontab permissions"),
            ("2.4.1.3", "cron.hourly permissions"),
            ("2.4.1.4", "cron.daily permissions"),
            ("2.4.1.5", "cron.weekly permissions"),
            ("2.4.1.6", "cron.monthly permissions"),
            ("2.4.1.7", "cron.d permissions"),
            ("2.4.1.8", "crontab limited to allowed users"),
            ("2.4.2.1", "at limited to allowed users"),
        ],
    },
    Section {
        name: "accounts",
        title: "Accounts and authentication (5.3, 5.4, 7.2), banners (1.6)",
        items: &[
            ("1.6.1", "message of the day reveals nothing"),
            ("1.6.2", "local login banner"),
            ("1.6.3", "remote login banner"),
            ("1.6.4", "/etc/motd permissions"),
            ("1.6.5", "/etc/issue permissions"),
            ("1.6.6", "/etc/issue.net permissions"),
            ("5.3.2.2", "pam_faillock enabled"),
            ("5.3.2.3", "pam_pwquality enabled"),
            ("5.3.3.2.2", "password length"),
            ("5.3.3.4.3", "strong password hashing in PAM"),
            ("5.4.1.1", "password expiration"),
            ("5.4.1.2", "minimum password age"),
            ("5.4.1.3", "password expiry warning"),
            ("5.4.1.4", "strong password hashing for new passwords"),
            ("5.4.1.5", "inactive accounts locked"),
            ("5.4.2.1", "root is the only UID 0 account"),
            ("5.4.2.2", "root's primary group is GID 0"),
            ("5.4.2.3", "group root is the only GID 0 group"),
            ("5.4.2.5", "root's PATH is safe"),
            ("5.4.2.7", "system accounts have no login shell"),
            ("5.4.3.1", "nologin is not a valid shell"),
            ("5.4.3.2", "idle shell timeout"),
            ("5.4.3.3", "default user umask"),
            ("7.2.1", "shadowed passwords"),
            ("7.2.2", "no empty password fields"),
            ("7.2.3", "every primary group exists"),
            ("7.2.4", "shadow group empty"),
            ("7.2.5", "no duplicate UIDs"),
            ("7.2.6", "no duplicate GIDs"),
            ("7.2.7", "no duplicate user names"),
            ("7.2.8", "no duplicate group names"),
        ],
    },
    Section {
        name: "logging",
        title: "Logging (6.1)",
        items: &[
            ("6.1.1.1", "a log daemon runs"),
            (
                "6.1.2.2",
                "journald forwarding to syslog where rsyslog is used",
            ),
            ("6.1.2.3", "journald compression"),
            ("6.1.2.4", "journald persistent storage"),
            ("6.1.3.1", "rsyslog installed"),
            ("6.1.3.2", "rsyslog running"),
            ("6.1.3.4", "rsyslog file creation mode"),
            ("6.1.3.5", "messages are logged"),
            ("6.1.3.7", "rsyslog does not receive remote logs"),
            ("6.1.3.8", "log rotation"),
            ("6.1.4.1", "log file permissions"),
        ],
    },
    Section {
        name: "audit",
        title: "auditd (6.2)",
        items: &[
            ("6.2.1.1", "auditd installed"),
            ("6.2.1.2", "auditd enabled and running"),
            ("6.2.1.3", "processes audited from boot"),
            ("6.2.1.4", "audit backlog limit"),
            ("6.2.2.1", "audit log size"),
            ("6.2.2.2", "audit logs kept"),
            ("6.2.2.3", "system stops when audit logs are full"),
            ("6.2.2.4", "warning when audit space runs low"),
            ("6.2.3.1", "sudoers changes"),
            ("6.2.3.2", "actions as another user"),
            ("6.2.3.3", "sudo log file changes"),
            ("6.2.3.4", "date and time changes"),
            ("6.2.3.5", "network environment changes"),
            ("6.2.3.6", "privileged commands"),
            ("6.2.3.7", "failed file access"),
            ("6.2.3.8", "user and group changes"),
            ("6.2.3.9", "permission changes"),
            ("6.2.3.10", "mounts"),
            ("6.2.3.11", "session records"),
            ("6.2.3.12", "logins and logouts"),
            ("6.2.3.13", "file deletions"),
            ("6.2.3.14", "MAC policy changes"),
            ("6.2.3.15", "chcon use"),
            ("6.2.3.16", "setfacl use"),
            ("6.2.3.17", "chacl use"),
            ("6.2.3.18", "usermod use"),
            ("6.2.3.19", "kernel module changes"),
            ("6.2.3.20", "audit configuration immutable"),
            ("6.2.3.21", "loaded rules match the files"),
            ("6.2.4.1", "audit log file mode"),
            ("6.2.4.2", "audit log file owner"),
            ("6.2.4.3", "audit log file group"),
            ("6.2.4.4", "audit log directory mode"),
            ("6.2.4.5", "audit configuration file mode"),
            ("6.2.4.6", "audit configuration file owner"),
            ("6.2.4.7", "audit configuration file group"),
            ("6.2.4.8", "audit tools mode"),
            ("6.2.4.9", "audit tools owner"),
            ("6.2.4.10", "audit tools group"),
        ],
    },
    Section {
        name: "integrity",
        title: "File integrity (6.3)",
        items: &[
            ("6.3.1", "AIDE installed and initialised"),
            ("6.3.2", "integrity checked regularly"),
            ("6.3.3", "audit tools protected by the integrity check"),
        ],
    },
];

/// How much of one section a baseline covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SectionCoverage {
    pub section: &'static str,
    pub title: &'static str,
    pub covered: Vec<&'static str>,
    pub missing: Vec<(&'static str, &'static str)>,
}

/// A baseline's coverage of the benchmark, per section, and the item ids its
/// rules name that are not in the catalogue (a typo, or another section).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    pub benchmark: &'static str,
    pub baseline: String,
    pub sections: Vec<SectionCoverage>,
    pub unknown_ids: Vec<String>,
}

impl Coverage {
    pub fn covered(&self) -> usize {
        self.sections.iter().map(|s| s.covered.len()).sum()
    }

    pub fn total(&self) -> usize {
        self.sections
            .iter()
            .map(|s| s.covered.len() + s.missing.len())
            .sum()
    }
}

/// Which benchmark items the rules of `baseline` cover.
pub fn coverage(baseline: &Loaded) -> Coverage {
    let named: std::collections::BTreeSet<&str> = baseline
        .rules
        .iter()
        .flat_map(|r| r.cis.iter().map(String::as_str))
        .collect();
    let sections = SECTIONS
        .iter()
        .map(|s| {
            let (covered, missing): (Vec<(&'static str, &'static str)>, Vec<_>) = s
                .items
                .iter()
                .copied()
                .partition(|(id, _)| named.contains(id));
            SectionCoverage {
                section: s.name,
                title: s.title,
                covered: covered.into_iter().map(|(id, _)| id).collect(),
                missing,
            }
        })
        .collect();
    let unknown_ids = named
        .iter()
        .filter(|id| {
            !SECTIONS
                .iter()
                .any(|s| s.items.iter().any(|(i, _)| i == *id))
        })
        .map(|id| id.to_string())
        .collect();
    Coverage {
        benchmark: BENCHMARK,
        baseline: baseline.name.clone(),
        sections,
        unknown_ids,
    }
}

/// Whether `rule` belongs to `section`: a category name (`ssh`) or a
/// benchmark item prefix (`5.1`, `6.2.3`) that one of its items starts with.
pub fn in_section(rule: &super::Rule, section: &str) -> bool {
    let s = section.trim_end_matches('.');
    rule.category.eq_ignore_ascii_case(s)
        || rule
            .cis
            .iter()
            .any(|id| id == s || id.starts_with(&format!("{s}.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_id_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for s in SECTIONS {
            for (id, _) in s.items {
                assert!(seen.insert(*id), "{id} twice");
            }
        }
    }

    #[test]
    fn the_shipped_strict_baseline_covers_at_least_85_items_and_names_no_unknown_id() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hardening");
        let strict = crate::harden::load(&dir, "strict").unwrap();
        let c = coverage(&strict);
        assert!(c.unknown_ids.is_empty(), "{:?}", c.unknown_ids);
        assert!(c.covered() >= 85, "{} of {}", c.covered(), c.total());
    }
}
