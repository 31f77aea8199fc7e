//! `maestro demo` headless: the demo's own setup (simulated fleet, SoT in a
//! temporary git repository, key, ssh_config, sandbox probe) and a changing
//! command run through the console's exec path (`maestro::tui::run_exec`,
//! the engine's connect_specs + run_command). The commands try to write all
//! over the host; only their node directories may change.

use std::path::Path;

use maestro::bus::Bus;
use maestro::fleet::{Cancel, NodeStatus};
use maestro::ops::Launch;
use maestro::tui::action::{ExecPlan, Job};
use maestro::tui::demo::Demo;
use maestro::tui::{ExecPolicy, run_exec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_commands_change_only_their_node_directories() {
    let marker = format!("maestro-demo-probe-{}", std::process::id());
    let host_paths = [
        format!("/tmp/{marker}"),
        format!("/etc/{marker}"),
        format!("/opt/{marker}"),
        format!("/var/tmp/{marker}"),
        format!("/root/{marker}"),
    ];
    for p in &host_paths {
        assert!(
            !Path::new(p).exists(),
            "{p} exists before the test: remove it"
        );
    }

    let demo = Demo::start(4).await.expect("the demo starts");
    if let Err(why) = &demo.sandbox {
        panic!(
            "the demo's sandbox does not work on this kernel ({why}); the demo would be read-only. \
             It needs user and mount namespaces and mount_setattr (Linux ≥ 5.12)"
        );
    }
    assert_eq!(demo.policy(), ExecPolicy::Allowed);
    let dir = demo.dir().to_path_buf();
    assert!(
        demo.sot.join(".git").is_dir(),
        "the demo SoT is a git repository"
    );
    let nodes: Vec<_> = demo.nodes().iter().take(2).cloned().collect();
    assert_eq!(nodes[0].name, "demo-00001");

    let script = format!(
        "touch /tmp/{marker}-$$ /tmp/{marker}; echo x > /etc/{marker}; mkdir -p /opt/{marker}; \
         touch /var/tmp/{marker} /root/{marker} {demo_dir}/{marker}; \
         echo written > ./node-probe && hostname && echo $$",
        demo_dir = dir.display()
    );
    let ctx = demo.exec_context().expect("the demo SoT loads");
    let (bus, mut rx) = Bus::new();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let plan = ExecPlan {
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        command: script,
        job: Job::Command,
    };
    let report = run_exec(&ctx, plan, Launch::new(bus, Cancel::new()))
        .await
        .expect("the run starts")
        .report;
    drain.await.unwrap();

    assert_eq!(report.results.len(), 2);
    for (node, r) in nodes.iter().zip(&report.results) {
        let out = String::from_utf8_lossy(&r.stdout.bytes);
        let err = String::from_utf8_lossy(&r.stderr.bytes);
        assert_eq!(r.status, NodeStatus::Ok, "{}: {out}{err}", r.node);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(node.name.as_str()), "its own hostname");
        let pid = lines.next().unwrap();
        assert!(
            err.contains(&format!("/etc/{marker}: Read-only file system")),
            "the write to /etc was refused: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(node.dir.join("node-probe")).unwrap(),
            "written\n",
            "the node directory is writable"
        );
        assert!(!Path::new(&format!("/tmp/{marker}-{pid}")).exists());
    }
    for p in host_paths
        .iter()
        .cloned()
        .chain([format!("{}/{marker}", dir.display())])
    {
        assert!(!Path::new(&p).exists(), "{p} was written on the host");
    }

    // The demo's library: what `p`, `i` and `h` offer works in the sandbox.
    let sot = maestro::sot::load(&demo.sot).unwrap();
    assert_eq!(sot.playbooks, ["demo-runtime"]);
    assert!(sot.profiles.contains_key("demo"));
    assert!(sot.baselines.contains(&"baseline".to_string()));
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for job in [
        Job::Playbook("demo-runtime".into()),
        Job::Install("demo".into()),
        Job::HardenAudit("baseline".into()),
    ] {
        let plan = ExecPlan {
            nodes: names.clone(),
            command: format!("{job:?}"),
            job: job.clone(),
        };
        let (bus, mut rx) = Bus::new();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let report = run_exec(&ctx, plan, Launch::new(bus, Cancel::new()))
            .await
            .unwrap_or_else(|e| panic!("{job:?} starts: {e}"))
            .report;
        drain.await.unwrap();
        for r in &report.results {
            assert!(!r.tasks.is_empty(), "{job:?} on {}: {:?}", r.node, r.error);
            if !matches!(job, Job::HardenAudit(_)) {
                assert_eq!(
                    r.status,
                    NodeStatus::Ok,
                    "{job:?} on {}: {:?}",
                    r.node,
                    r.tasks
                );
            }
        }
    }
    for node in &nodes {
        let manifest = node.dir.join("opt/maestro/MANIFEST");
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "demo-runtime 1.0.0\n",
            "the playbook wrote inside the node's directory"
        );
    }

    demo.shutdown().await;
    assert!(!dir.exists(), "the demo removes its directory on exit");
}
