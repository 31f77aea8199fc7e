use super::*;

fn target() -> Target {
    Target {
        agent: "support-triage".into(),
        host: "127.0.0.1".parse().unwrap(),
        primary_port: 8081,
        gateway: AgentGateway {
            port: 9081,
            preview_port: 18081,
        },
        health_path: Some("/healthz".into()),
    }
}

#[test]
fn traffic_reads_and_prints_as_typed() {
    for s in [
        "primary",
        "preview",
        "split:0",
        "split:30",
        "split:100",
        "mirror:5",
        "mirror:100",
    ] {
        let t: Traffic = s.parse().unwrap();
        assert_eq!(t.to_string(), s);
    }
    for bad in [
        "",
        "split",
        "split:",
        "split:101",
        "split:-1",
        "mirror:x",
        "canary:10",
        "Primary",
        "split:30:1",
    ] {
        assert_eq!(
            bad.parse::<Traffic>(),
            Err(GatewayError::BadTraffic(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        "split:30".parse::<Traffic>().unwrap().preview_share(),
        30,
        "a split gives the preview its percent of the answers"
    );
    assert_eq!("mirror:100".parse::<Traffic>().unwrap().preview_share(), 0);
}

#[test]
fn a_split_is_weighted_and_its_ends_are_single_upstreams() {
    let t = target();
    let c = t.config(Traffic::Split {
        preview_percent: 30,
    });
    assert!(c.starts_with("# maestro traffic=split:30 "), "{c}");
    assert!(
        c.contains("server 127.0.0.1:8081 weight=70 max_fails=0;"),
        "{c}"
    );
    assert!(
        c.contains("server 127.0.0.1:18081 weight=30 max_fails=0;"),
        "{c}"
    );
    assert!(
        c.contains("proxy_pass http://maestro.support-triage.split;"),
        "{c}"
    );
    assert!(c.contains("listen 127.0.0.1:9081;"), "{c}");
    // nginx weights start at 1: 0 and 100 are one upstream, no weights.
    let zero = t.config(Traffic::Split { preview_percent: 0 });
    assert!(!zero.contains("weight="), "{zero}");
    assert!(zero.contains("proxy_pass http://maestro.support-triage.primary;"));
    let all = t.config(Traffic::Split {
        preview_percent: 100,
    });
    assert!(!all.contains("weight="), "{all}");
    assert!(all.contains("proxy_pass http://maestro.support-triage.preview;"));
    assert_eq!(
        config::read_header(all.lines().next().unwrap()),
        Some(Traffic::Split {
            preview_percent: 100
        }),
        "the header reads back what was set, not what it rendered to"
    );
}

#[test]
fn a_mirror_answers_from_the_primary_and_copies_a_share_to_the_preview() {
    let t = target();
    let c = t.config(Traffic::Mirror { percent: 25 });
    assert!(
        c.contains("proxy_pass http://maestro.support-triage.primary;"),
        "{c}"
    );
    assert!(c.contains("mirror /.maestro-mirror;"), "{c}");
    assert!(c.contains("split_clients \"${request_id}\""), "{c}");
    assert!(c.contains("25% 1;"), "{c}");
    assert!(c.contains("internal;"), "{c}");
    assert!(c.contains("proxy_pass http://maestro.support-triage.preview$request_uri;"));
    let all = t.config(Traffic::Mirror { percent: 100 });
    assert!(!all.contains("split_clients"), "{all}");
    assert!(all.contains("mirror /.maestro-mirror;"), "{all}");
    let none = t.config(Traffic::Mirror { percent: 0 });
    assert!(!none.contains("mirror /"), "{none}");
}

#[test]
fn ipv6_loopbacks_are_bracketed() {
    let mut t = target();
    t.host = "::1".parse().unwrap();
    let c = t.config(Traffic::Primary);
    assert!(c.contains("listen [::1]:9081;"), "{c}");
    assert!(c.contains("server [::1]:8081 max_fails=0;"), "{c}");
}

/// Every kind of traffic renders a config the real nginx accepts, beside
/// a second agent's (the names of upstreams and variables do not clash).
#[test]
fn every_rendered_config_passes_the_real_nginx_t() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is needed for this test: apt-get install nginx-light (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    let mut other = target();
    other.agent = "fleet-doctor".into();
    other.primary_port = 8083;
    other.gateway = AgentGateway {
        port: 9083,
        preview_port: 18083,
    };
    let d = dir.path().display();
    let main = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/t1;\n    proxy_temp_path {d}/t2;\n    fastcgi_temp_path {d}/t3;\n    uwsgi_temp_path {d}/t4;\n    scgi_temp_path {d}/t5;\n    include {d}/agents/*.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    for traffic in [
        "primary",
        "preview",
        "split:0",
        "split:1",
        "split:30",
        "split:99",
        "split:100",
        "mirror:0",
        "mirror:10",
        "mirror:100",
    ] {
        let traffic: Traffic = traffic.parse().unwrap();
        std::fs::write(agents.join("a.conf"), target().config(traffic)).unwrap();
        std::fs::write(
            agents.join("b.conf"),
            other.config(Traffic::Mirror { percent: 50 }),
        )
        .unwrap();
        let o = std::process::Command::new(nginx)
            .args(["-t", "-q", "-e", "stderr", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{traffic}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            target().config(traffic)
        );
    }
}

#[test]
fn the_script_quotes_every_value_and_parses_as_sh() {
    let mut t = target();
    t.agent = "a'b$(touch /tmp/pwned)".into();
    let text = script("set", &t, Some(Traffic::Preview));
    assert!(
        text.contains("g_agent='a'\\''b$(touch /tmp/pwned)'\n"),
        "{text}"
    );
    let o = std::process::Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(&text)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Only a traffic that gives clients to the preview checks its health.
    assert!(
        text.contains("g_check=http://127.0.0.1:18081/healthz\n"),
        "{text}"
    );
    let text = script("set", &t, Some(Traffic::Mirror { percent: 100 }));
    assert!(text.contains("g_check=''\n"), "{text}");
}

#[test]
fn reports_parse() {
    let r = parse(b"noise\n@@maestro gateway running=1 pid=42 configured=1 traffic=split:30 port=9081\n@@maestro result=reloaded ms=12 detail=nginx reloaded with split:30\n");
    assert_eq!(
        r.state,
        Some(GatewayState {
            running: true,
            pid: Some(42),
            configured: true,
            traffic: Some(Traffic::Split {
                preview_percent: 30
            }),
        })
    );
    assert_eq!(r.result.as_deref(), Some("reloaded"));
    assert_eq!(r.ms, Some(12));
    assert_eq!(r.detail.as_deref(), Some("nginx reloaded with split:30"));
    let r = parse(b"@@maestro gateway running=0 pid= configured=0 traffic= port=9081\n");
    assert_eq!(r.state, Some(GatewayState::default()));
}

#[test]
fn a_node_without_an_ip_loopback_is_refused_before_anything_runs() {
    let text = "[node.n1]\naddress = \"10.0.0.1\"\nvars = { loopback = \"127.0.0.1; include /etc/shadow\" }\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("maestro.toml"), "[maestro]\nname = \"t\"\n").unwrap();
    std::fs::write(dir.path().join("nodes.toml"), text).unwrap();
    std::fs::write(
        dir.path().join("models.toml"),
        "[model.m]\nprovider = \"p\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agents.toml"),
        "[agent.a]\nmodel = \"m\"\nautonomy = \"L1\"\nport = 8081\ngateway = { port = 9081, preview_port = 18081 }\n",
    )
    .unwrap();
    let sot = crate::sot::load(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let agent = &sot.agents["a"];
    let node = &sot.nodes[0];
    match Target::of(&sot, agent, node) {
        Err(GatewayError::BadHost { host, .. }) => {
            assert_eq!(host, "127.0.0.1; include /etc/shadow")
        }
        other => panic!("{other:?}"),
    }
}
