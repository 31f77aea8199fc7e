use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// Random values in each provider's format (generated, never issued), one
/// per line, in the three kinds of file a SoT holds.
const SECRETS: &[(&str, &str)] = &[
    (
        "secrets/cloud.toml",
        include_str!("../../tests/secrets/secrets/cloud.toml"),
    ),
    (
        "secrets/vcs.toml",
        include_str!("../../tests/secrets/secrets/vcs.toml"),
    ),
    (
        "secrets/ai.toml",
        include_str!("../../tests/secrets/secrets/ai.toml"),
    ),
    (
        "secrets/generic.toml",
        include_str!("../../tests/secrets/secrets/generic.toml"),
    ),
    (
        "secrets/agent.vars",
        include_str!("../../tests/secrets/secrets/agent.vars"),
    ),
    (
        "secrets/infra.vars",
        include_str!("../../tests/secrets/secrets/infra.vars"),
    ),
    (
        "secrets/config.j2",
        include_str!("../../tests/secrets/secrets/config.j2"),
    ),
];

/// Hashes, UUIDs, placeholders, references, public keys, URLs without
/// passwords: what sits where secrets sit.
const NEAR_MISSES: &[(&str, &str)] = &[
    (
        "near_misses/digests.toml",
        include_str!("../../tests/secrets/near_misses/digests.toml"),
    ),
    (
        "near_misses/ids.toml",
        include_str!("../../tests/secrets/near_misses/ids.toml"),
    ),
    (
        "near_misses/placeholders.toml",
        include_str!("../../tests/secrets/near_misses/placeholders.toml"),
    ),
    (
        "near_misses/people.toml",
        include_str!("../../tests/secrets/near_misses/people.toml"),
    ),
    (
        "near_misses/urls.vars",
        include_str!("../../tests/secrets/near_misses/urls.vars"),
    ),
    (
        "near_misses/templates.j2",
        include_str!("../../tests/secrets/near_misses/templates.j2"),
    ),
];

/// 1-based numbers of the corpus lines that are entries: not blank, not a
/// comment, a table header or a template statement.
fn entries(text: &str) -> BTreeSet<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            !(l.is_empty()
                || l.starts_with('#')
                || l.starts_with("{#")
                || l.starts_with("{%")
                || (l.starts_with('[') && l.ends_with(']')))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

fn extension(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or("")
}

#[test]
fn every_rule_compiles_and_has_a_unique_id() {
    let ids: Vec<&str> = rules().map(|(id, _)| id).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len());
    // Forces every regex to compile.
    assert!(rules::find("plain text").is_empty());
}

#[test]
fn every_secret_of_the_corpus_is_found_on_its_line() {
    let scanner = Scanner::default();
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rules_seen = BTreeSet::new();
    for (path, text) in SECRETS {
        let findings = scanner.scan(path, text);
        let found: BTreeSet<usize> = findings.iter().map(|f| f.line).collect();
        let expected = entries(text);
        let missed: Vec<_> = expected.difference(&found).collect();
        let extra: Vec<_> = found.difference(&expected).collect();
        assert!(
            missed.is_empty() && extra.is_empty(),
            "{path}: no finding on lines {missed:?}; findings off the entry lines {extra:?}"
        );
        *per_kind.entry(extension(path)).or_default() += expected.len();
        rules_seen.extend(findings.iter().map(|f| f.rule));
    }
    let total: usize = per_kind.values().sum();
    assert!(total >= 100, "only {total} secrets in the corpus");
    for kind in ["toml", "vars", "j2"] {
        assert!(
            per_kind.get(kind).copied().unwrap_or(0) >= 20,
            "{per_kind:?}"
        );
    }
    // Each rule is exercised by at least one secret.
    let all: BTreeSet<&str> = rules().map(|(id, _)| id).collect();
    let unused: Vec<_> = all.difference(&rules_seen).collect();
    assert!(
        unused.is_empty(),
        "rules without a corpus secret: {unused:?}"
    );
}

#[test]
fn at_most_two_percent_of_near_misses_are_flagged() {
    let scanner = Scanner::default();
    let mut lines = 0;
    let mut flagged = Vec::new();
    for (path, text) in NEAR_MISSES {
        lines += entries(text).len();
        let findings = scanner.scan(path, text);
        let on: BTreeSet<(usize, &str)> = findings.iter().map(|f| (f.line, f.rule)).collect();
        flagged.extend(
            on.into_iter()
                .map(|(line, rule)| format!("{path}:{line} ({rule})")),
        );
    }
    assert!(lines >= 100, "only {lines} near-misses in the corpus");
    assert!(
        flagged.len() * 50 <= lines,
        "{} of {lines} near-misses flagged: {flagged:?}",
        flagged.len()
    );
}

#[test]
fn masking_removes_every_secret_and_keeps_the_keys() {
    let scanner = Scanner::default();
    for (path, text) in SECRETS {
        let masked = scanner.mask(text);
        for hit in rules::find(text) {
            let secret = &text[hit.span.clone()];
            assert!(
                !masked.contains(secret),
                "{path}: a {} survives masking",
                hit.rule.id
            );
        }
        assert!(scanner.scan(path, &masked).is_empty(), "{path}");
        assert_eq!(masked.lines().count(), text.lines().count(), "{path}");
    }
    let line = "api_token = \"q7XkT2pLm9RvW4zN8bYc3Hf6\" # rotated";
    assert_eq!(scanner.mask(line), "api_token = \"****\" # rotated");
    let url = "DATABASE_URL=postgres://triage:Vx9kQ2mLp7Rt@db:5432/triage";
    assert_eq!(
        scanner.mask(url),
        "DATABASE_URL=postgres://triage:****@db:5432/triage"
    );
}

#[test]
fn a_finding_never_holds_the_secret() {
    let scanner = Scanner::default();
    for (path, text) in SECRETS {
        let hits = rules::find(text);
        for finding in scanner.scan(path, text) {
            let shown = format!("{finding} {finding:?}");
            for hit in &hits {
                assert!(!shown.contains(&text[hit.span.clone()]), "{path}");
            }
            assert!(finding.excerpt.contains(MASK), "{path}:{}", finding.line);
        }
    }
}

#[test]
fn a_finding_names_file_line_column_and_rule() {
    let token = format!("ghp_{}", "aB3dE5".repeat(6));
    let text = format!("[node.a]\n# ünïcode before\nvars = {{ token = \"{token}\" }}\n");
    let findings = Scanner::default().scan("nodes.toml", &text);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!((f.line, f.column, f.rule), (3, 19, "github-token"));
    assert_eq!(
        f.to_string(),
        "nodes.toml:3:19: secret (github-token): GitHub token"
    );
    assert_eq!(f.excerpt, "vars = { token = \"****\" }");
    assert_eq!(f.fingerprint, fingerprint(&token));

    let line = format!("# ü {token}");
    let f = &Scanner::default().scan("notes.md", &line)[0];
    assert_eq!(f.column, 5, "columns count characters, not bytes");
}

#[test]
fn a_multi_line_private_key_is_found_at_its_armor_and_masked_whole() {
    let body: String = (0..4)
        .map(|i| format!("MIIEvQIBADAN{i}gkq7Rt2xLp9Qw4Zm8Vb3Nc6Hs1Jd5Fg0Ky2Ta7Ue4Wo9\n"))
        .collect();
    let text = format!(
        "[tls]\nkey = \"\"\"\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n\"\"\"\nport = 443\n"
    );
    let scanner = Scanner::default();
    let findings = scanner.scan("tls.toml", &text);
    assert_eq!(findings.len(), 1);
    assert_eq!((findings[0].line, findings[0].column), (3, 1));
    assert_eq!(findings[0].rule, "private-key");
    assert_eq!(
        scanner.mask(&text),
        "[tls]\nkey = \"\"\"\n****\n\"\"\"\nport = 443\n"
    );
}

#[test]
fn named_near_misses_pass() {
    let scanner = Scanner::default();
    let rsa = format!(
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{}",
        "Cq7Xk+/9".repeat(40)
    );
    let clean = [
        "digest = \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
        "commit = \"3f786850e387550fdab836ed7e6dc881de23001b\"",
        "id = \"6fa459ea-ee8a-3ca4-894e-db77e160355e\"",
        "password = \"changeme\"",
        "token = \"<your-token-here>\"",
        "token = \"${TOKEN}\"",
        "password = \"{{ vault_password }}\"",
        "aws_access_key_id = \"AKIAIOSFODNN7EXAMPLE\"",
        "motd = \"dGhpcyBpcyBub3QgYSBzZWNyZXQsIGp1c3QgdGV4dA==\"",
        "url = \"https://user@git.acme.internal/sot.git\"",
        "url = \"https://git.acme.internal:8443/sot.git\"",
        "max_tokens = 4096",
        "token_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
    ];
    for line in clean.iter().map(|s| s.to_string()).chain([
        format!("ssh_keys = [\"{rsa} ada@laptop\"]"),
        format!(
            "ssh_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx7{} ada\"]",
            "Qm3v".repeat(9)
        ),
    ]) {
        assert!(scanner.scan("x.toml", &line).is_empty(), "flagged: {line}");
        assert_eq!(scanner.mask(&line), line);
    }
}

#[test]
fn single_values_and_variables() {
    let scanner = Scanner::default();
    assert!(scanner.is_secret(&format!("hf_{}", "qWnTzRkPvLmXsJdYhGbFcQeUaNyKoBiMrT")));
    assert!(scanner.is_secret(&format!("sk-ant-api03-{}AA", "x9Y_8z-W".repeat(12))));
    assert!(!scanner.is_secret("Kp9#vR2m!xQ7"));
    assert!(
        !scanner
            .is_secret("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    );
    assert!(scanner.is_secret_var("DB_PASSWORD", "Kp9#vR2m!xQ7"));
    assert!(scanner.is_secret_var("clientSecret", "q7XkT2pLm9RvW4zN8bYc3Hf6"));
    assert!(!scanner.is_secret_var("DB_PASSWORD", "changeme"));
    assert!(!scanner.is_secret_var("db_password_file", "/run/secrets/Kp9vR2mxQ7"));
    assert!(!scanner.is_secret_var("tokenizer", "q7XkT2pLm9RvW4zN8bYc3Hf6"));
    assert!(!scanner.is_secret_var("gpu_model", "H100"));
}

#[test]
fn the_allowlist_lets_paths_patterns_and_fingerprints_through() {
    let a = "sk_test_Rq2xW7kLp9Zt4Vb8Nm3Hc6Js".to_string();
    let b = format!("ghp_{}", "Zz9Yy8Xx7Ww6".repeat(3));
    let c = format!("glpat-{}", "Ab1Cd2Ef3Gh4Ij5Kl6Mn");
    let text = format!("one = \"{a}\"\ntwo = \"{b}\"\nthree = \"{c}\"\n");
    let allow = Allowlist::parse(
        "secrets.toml",
        &format!(
            "[allow]\npaths = [\"^docs/examples/\"]\nregexes = [\"^sk_test_\"]\nfingerprints = [\"{}\"]\n",
            fingerprint(&b).to_uppercase()
        ),
    )
    .expect("valid allowlist");
    let scanner = Scanner::new(allow);
    assert!(scanner.scan("docs/examples/agent.toml", &text).is_empty());
    let left: Vec<(usize, &str)> = scanner
        .scan("nodes.toml", &text)
        .iter()
        .map(|f| (f.line, f.rule))
        .collect();
    assert_eq!(left, [(3, "gitlab-token")]);
    // Allowed into the SoT is not allowed onto the screen.
    assert!(!scanner.mask(&text).contains(&a));
    assert!(
        Scanner::default()
            .scan("docs/examples/agent.toml", &text)
            .len()
            == 3
    );
}

#[test]
fn a_bad_allowlist_says_where() {
    let text = "[allow]\npaths = [\"^docs/\", \"(unclosed\"]\nregexes = [\"ok\"]\nfingerprints = [\"abc\", \"zz\"]\n";
    let SecretsError::Allowlist(problems) = Allowlist::parse("sot/secrets.toml", text).unwrap_err();
    let at: Vec<(usize, usize)> = problems.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(at, [(2, 20), (4, 17), (4, 24)]);
    assert!(
        problems[0].message.contains("not a regex"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1]
            .to_string()
            .starts_with("sot/secrets.toml:4:17: `fingerprints`")
    );

    let unknown = "[allow]\npaths = []\nrules = [\"jwt\"]\n";
    let err = Allowlist::parse("secrets.toml", unknown).unwrap_err();
    let SecretsError::Allowlist(problems) = &err;
    assert_eq!((problems[0].line, problems[0].column), (3, 1));
    assert!(err.to_string().contains("unknown field `rules`"), "{err}");
    assert!(
        err.to_string().contains("`fingerprints`"),
        "names the keys: {err}"
    );

    let syntax = "[allow\n";
    let SecretsError::Allowlist(problems) = Allowlist::parse("secrets.toml", syntax).unwrap_err();
    assert_eq!(problems[0].line, 1);

    assert!(Allowlist::parse("secrets.toml", "# nothing allowed\n").is_ok());
}

/// A SoT the size of a large fleet: ten thousand node tables full of
/// digests, UUIDs and addresses.
fn fleet_sot(nodes: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut hex = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b"0123456789abcdef"[(state % 16) as usize])
            })
            .collect()
    };
    let mut out = String::with_capacity(nodes * 420);
    for i in 0..nodes {
        let (region, role) = [("eu-west", "inference"), ("us-east", "gateway")][i % 2];
        out.push_str(&format!(
            "[node.gpu-{region}-{i:05}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"gpu\", \"{role}s\"]\n\
             tags = {{ env = \"prod\", region = \"{region}\", jurisdiction = \"eu\", pii = \"none\", role = \"{role}\" }}\n\
             vars = {{ gpu_count = 8, gpu_model = \"H100\", machine_id = \"{}\", node_uuid = \"{}-{}-4{}-a{}-{}\" }}\n\
             image = \"ghcr.io/acme/runtime@sha256:{}\"\n# provisioned from commit {}\n\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            hex(32),
            hex(8),
            hex(4),
            hex(3),
            hex(3),
            hex(12),
            hex(64),
            hex(40),
        ));
    }
    out
}

#[test]
fn a_ten_thousand_node_sot_is_clean() {
    let text = fleet_sot(10_000);
    assert!(text.len() > 3_000_000);
    assert!(Scanner::default().scan("nodes.toml", &text).is_empty());
}

#[test]
fn the_most_specific_rule_wins_an_overlap() {
    let key = format!(
        "sk-proj-{}T3BlbkFJ{}",
        "Qw3rTy7u".repeat(5),
        "Zx8cVb2n".repeat(5)
    );
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC03In0.Xq3v9KpL2mNb7RtY4wZc8Hf1Jd6Gs5Ae0Uk-_Vo";
    let text = format!("OPENAI_API_KEY = \"{key}\"\nauth_token = \"{jwt}\"\n");
    let rules: Vec<&str> = Scanner::default()
        .scan("agents.toml", &text)
        .iter()
        .map(|f| f.rule)
        .collect();
    assert_eq!(rules, ["openai-api-key", "jwt"]);
}

#[test]
fn many_secrets_in_one_text_are_each_reported() {
    // Distinct tokens: the index spelled in letters, four of them (a run of
    // six equal characters is filler).
    let token = |i: usize| {
        let spelled: String = format!("{i:0>4}")
            .bytes()
            .map(|d| char::from(b"KpLmNqRsTv"[usize::from(d - b'0')]))
            .collect();
        format!("ghp_{spelled}Qm7xKp2LvR9tWb4ZcN8hJd3FsY6gAe7Y")
    };
    let one_line: Vec<String> = (0..2_000).map(token).collect();
    let mut text = format!("tokens = [\"{}\"]\n", one_line.join("\", \""));
    for i in 2_000..4_000 {
        text.push_str(&format!("t{i} = \"{}\"\r\n", token(i)));
    }
    let findings = Scanner::default().scan("dump.toml", &text);
    assert_eq!(findings.len(), 4_000);
    assert!(
        findings
            .iter()
            .all(|f| f.excerpt.chars().count() <= EXCERPT_CHARS + 1)
    );
    let last = &findings[3_999];
    assert_eq!((last.line, last.column), (2_001, 10));
    assert_eq!(last.excerpt, "t3999 = \"****\"");
}

#[test]
fn back_to_back_private_keys_are_two_findings() {
    let body = "MIIEowIBAAKCAQEAq7BFUpkGp3+XQzq9R0Lm4y2Nv8Tg5Hc1Wd6Jb0Ks3Fe7Za9Px";
    let text = format!(
        "a = \"-----BEGIN RSA PRIVATE KEY-----\\n{body}\\n\"\nb = \"-----BEGIN EC PRIVATE KEY-----\\n{body}\\n-----END EC PRIVATE KEY-----\"\n"
    );
    let scanner = Scanner::default();
    let lines: Vec<usize> = scanner
        .scan("k.toml", &text)
        .iter()
        .map(|f| f.line)
        .collect();
    assert_eq!(lines, [1, 2]);
    assert_eq!(scanner.mask(&text), "a = \"****\"\nb = \"****\"\n");
}

#[test]
fn code_quoted_in_notes_is_not_a_secret() {
    let notes = "\
We now call `let password = cfg.db.password();` before connecting.
    let token = TokenStream::from_str(&self.value())?;
    pub const SAM_PASSWORD_FILTER: PasswordFilterKind = PasswordFilterKind(7);
    lt_token: self.lt_token.clone(),
    creds: PKERB_S4U2PROXY_CRED,
    fn set_password(&mut self, password: &SecretString) {}
";
    let found: Vec<String> = Scanner::default()
        .scan("notes/2026-05-01.md", notes)
        .iter()
        .map(|f| f.excerpt.clone())
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn the_allowlist_file_itself_is_clean() {
    let text = format!(
        "[allow]\npaths = [\"^docs/examples/\"]\nregexes = [\"EXAMPLE\", \"^dummy-\"]\nfingerprints = [\"{}\"]\n",
        fingerprint("anything")
    );
    assert!(Allowlist::parse(FILE, &text).is_ok());
    assert!(Scanner::default().scan(FILE, &text).is_empty());
}
