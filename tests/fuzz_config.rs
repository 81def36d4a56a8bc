//! Fuzzing the file source: arbitrary bytes, and "almost valid" files (a valid file that uses
//! every field, with values swapped for other types, huge, negative, empty, deeply nested or
//! unicode ones, keys removed or added, text cut and garbled), through
//! `weir::source::file::parse` and then `routing::compile`.
//!
//! Invariants: nothing panics or hangs; a refusal is an `Err` whose message (and display)
//! is not empty and names the file; whatever parses passes `validate_spec` and compiles to
//! one status per pool, each with its Accepted, ResolvedRefs and Ready conditions, again when
//! compiled over its own previous table.
//!
//! `WEIR_FUZZ_CASES=20000 cargo test --release --test fuzz_config -- --nocapture`, or
//! `WEIR_FUZZ_SECONDS=600` for a timed run (see `fuzz_common.rs`).

#[path = "fuzz_common.rs"]
mod fuzz_common;

use fuzz_common::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use std::time::Duration;
use weir::api::validate_spec;
use weir::routing::compile;
use weir::source::file::parse;

const FILE: &str = "fuzz.yaml";

/// A valid file that sets every field of the API at least once.
fn base_documents() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "ports": [{ "name": "http", "port": 80 }, { "name": "grpc", "port": 81 }] }
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "web-1", "namespace": "shop",
                          "labels": { "kubernetes.io/service-name": "web" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080 },
                      { "name": "grpc", "port": 9090, "appProtocol": "kubernetes.io/h2c" }],
            "endpoints": [
                { "addresses": ["10.0.0.1"], "conditions": { "ready": true },
                  "targetRef": { "kind": "Pod", "namespace": "shop", "name": "web-1" } },
                { "addresses": ["10.0.0.2"],
                  "conditions": { "ready": false, "serving": true, "terminating": true } }
            ]
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": { "name": "shop-tls", "namespace": "shop" },
            "data": { "tls.crt": "dGVzdA==", "tls.key": "dGVzdA==" }
        }),
        json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": {
                "className": "weir",
                "routes": [{ "host": "shop.example.com", "pathPrefix": "/" },
                           { "host": "*.example.com", "pathPrefix": "/api" },
                           { "host": "" }],
                "backends": [{ "service": "web", "port": "http", "weight": 3 },
                             { "service": "web", "port": 81, "weight": 0 }],
                "algorithm": "RoundRobin",
                "slowStart": { "windowSeconds": 30 },
                "healthCheck": { "http": { "path": "/healthz", "host": "shop.example.com",
                                           "expectedStatuses": ["200", "300-399"] },
                                 "intervalSeconds": 5, "timeoutSeconds": 1,
                                 "healthyThreshold": 2, "unhealthyThreshold": 3 },
                "outlierDetection": { "consecutiveFailures": 5, "ejectionSeconds": 30,
                                      "maxEjectedPercent": 50 },
                "tls": { "secretName": "shop-tls", "redirectHttp": true,
                         "hsts": { "maxAgeSeconds": 31536000, "includeSubDomains": true } },
                "sessionAffinity": { "cookie": { "name": "sticky", "ttlSeconds": 60,
                                                 "path": "/", "domain": "example.com",
                                                 "secure": true, "httpOnly": true,
                                                 "sameSite": "Strict", "forwardCookie": false } },
                "retries": { "attempts": 2, "onStatus": [502, 503] },
                "timeouts": { "connectMillis": 500, "requestSeconds": 30, "idleSeconds": 60 }
            }
        }),
        json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": { "name": "hash", "namespace": "shop" },
            "spec": {
                "routes": [{ "host": "hash.example.com" }],
                "backends": [{ "service": "web", "port": "grpc" }],
                "algorithm": "ConsistentHash",
                "hashOn": { "header": "x-user" },
                "healthCheck": { "tcp": {} }
            }
        }),
        json!({
            "apiVersion": "v1", "kind": "List",
            "items": [{
                "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
                "metadata": { "name": "ewma" },
                "spec": {
                    "routes": [{ "host": "ewma.example.com", "pathPrefix": "/x/" }],
                    "backends": [{ "service": "missing", "port": "http" }],
                    "algorithm": "PeakEwma",
                    "peakEwma": { "decaySeconds": 10 }
                }
            }]
        }),
    ]
}

fn to_yaml(documents: &[Value], json_style: bool) -> String {
    documents
        .iter()
        .map(|d| {
            if json_style {
                // JSON is YAML too.
                serde_json::to_string(d).expect("JSON")
            } else {
                serde_saphyr::to_string(d).expect("YAML")
            }
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// A value to put where another was.
fn replacement() -> impl Strategy<Value = Value> {
    let fixed = prop::sample::select(vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(-4294967296i64),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(4294967296u64),
        json!(65536),
        json!(1e300),
        json!(-0.5),
        json!(""),
        json!(" "),
        json!("80"),
        json!("true"),
        json!("0x10"),
        json!(".inf"),
        json!("~"),
        json!("ü🦀\u{202e}\u{0}"),
        json!("*.*.example.com"),
        json!("/"),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({ "a": 1 }),
        json!({ "kind": "List" }),
    ]);
    prop_oneof![
        6 => fixed,
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => (1usize..100_000).prop_map(|n| Value::from("x".repeat(n))),
        1 => (1usize..200).prop_map(|depth| {
            let mut v = json!("deep");
            for i in 0..depth {
                v = if i % 2 == 0 { json!([v]) } else { json!({ "k": v }) };
            }
            v
        }),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    AddKey(String, Value),
    /// The node, wrapped in a list.
    Listify,
    /// A copy of the document appended (a duplicate object).
    DuplicateDocument,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => replacement().prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        1 => (
            prop::sample::select(vec!["unknownField", "spec", "kind", "weight", "", "🦀"]),
            replacement()
        )
            .prop_map(|(k, v)| Edit::AddKey(k.to_string(), v)),
        1 => Just(Edit::Listify),
        1 => Just(Edit::DuplicateDocument),
    ]
}

/// Where an edit lands: a choice at each level of the tree (mod the children there).
#[derive(Debug, Clone)]
struct Site {
    path: Vec<usize>,
    edit: Edit,
}

fn site() -> impl Strategy<Value = Site> {
    (prop::collection::vec(any::<usize>(), 1..8), edit())
        .prop_map(|(path, edit)| Site { path, edit })
}

fn apply(documents: &mut Vec<Value>, site: &Site) {
    let doc = site.path[0] % documents.len();
    if let Edit::DuplicateDocument = site.edit {
        let copy = documents[doc].clone();
        documents.push(copy);
        return;
    }
    // Walk down to the node, remembering its parent for removals.
    let mut node = &mut documents[doc];
    for &choice in &site.path[1..] {
        let next_is_leaf = match node {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => true,
        };
        if next_is_leaf {
            break;
        }
        // Stop early sometimes: edits land at every depth.
        if choice % 5 == 0 {
            break;
        }
        node = match node {
            Value::Object(m) => {
                let key = m.keys().nth(choice % m.len()).cloned().expect("a key");
                if matches!(site.edit, Edit::Remove)
                    && !matches!(m.get(&key), Some(Value::Object(_)) | Some(Value::Array(_)))
                {
                    m.remove(&key);
                    return;
                }
                m.get_mut(&key).expect("the key")
            }
            Value::Array(a) => {
                let n = a.len();
                if matches!(site.edit, Edit::Remove) && choice % 3 == 0 {
                    a.remove(choice % n);
                    return;
                }
                &mut a[choice % n]
            }
            _ => unreachable!("leaves stop the walk"),
        };
    }
    match &site.edit {
        Edit::Replace(v) => *node = v.clone(),
        Edit::Remove => *node = Value::Null,
        Edit::AddKey(k, v) => match node {
            Value::Object(m) => {
                m.insert(k.clone(), v.clone());
            }
            other => *other = json!({ k.clone(): v.clone() }),
        },
        Edit::Listify => *node = json!([node.clone()]),
        Edit::DuplicateDocument => {}
    }
}

/// Damage done to the text itself, after it is written.
#[derive(Debug, Clone)]
enum TextEdit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, &'static str),
    DeleteLine(usize),
    DuplicateLine(usize),
    Indent(usize),
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    let at = any::<usize>();
    prop_oneof![
        at.prop_map(TextEdit::Truncate),
        (at, any::<u8>()).prop_map(|(a, b)| TextEdit::Flip(a, b)),
        (
            at,
            prop::sample::select(vec![
                "\t",
                ": ",
                "- ",
                "&a ",
                "*a",
                "!!binary ",
                "!!str ",
                "<<: *a\n",
                "? ",
                "|\n",
                ">-\n",
                "{",
                "}",
                "[",
                "]",
                "\"",
                "'",
                "#",
                "---\n",
                "...\n",
                "%YAML 1.1\n",
                "!include /etc/hostname\n",
                "\u{feff}",
                "\r\n",
                "\u{0}",
                "ü",
                "\\u0000",
            ])
        )
            .prop_map(|(a, s)| TextEdit::Insert(a, s)),
        at.prop_map(TextEdit::DeleteLine),
        at.prop_map(TextEdit::DuplicateLine),
        at.prop_map(TextEdit::Indent),
    ]
}

fn apply_text(text: &mut String, e: &TextEdit) {
    let boundary = |t: &str, at: usize| -> usize {
        let mut i = at % (t.len() + 1);
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match e {
        TextEdit::Truncate(at) => {
            let i = boundary(text, *at);
            text.truncate(i);
        }
        TextEdit::Flip(at, byte) => {
            let mut bytes = std::mem::take(text).into_bytes();
            if !bytes.is_empty() {
                let n = bytes.len();
                bytes[at % n] ^= byte;
            }
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        TextEdit::Insert(at, s) => {
            let i = boundary(text, *at);
            text.insert_str(i, s);
        }
        TextEdit::DeleteLine(at) | TextEdit::DuplicateLine(at) | TextEdit::Indent(at) => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.is_empty() {
                return;
            }
            let i = at % lines.len();
            match e {
                TextEdit::DeleteLine(_) => {
                    lines.remove(i);
                }
                TextEdit::DuplicateLine(_) => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                _ => lines[i].insert(0, ' '),
            }
            *text = lines.join("\n");
        }
    }
}

/// The invariants, on any text.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse(FILE, text) {
        Err(e) => {
            prop_assert!(!e.message.trim().is_empty(), "an empty message: {:?}", e);
            prop_assert_eq!(e.file.as_str(), FILE);
            let shown = e.to_string();
            prop_assert!(
                shown.starts_with(FILE) && shown.len() > FILE.len() + 2,
                "{}",
                shown
            );
        }
        Ok(store) => {
            for (key, pool) in &store.pools {
                let errors = validate_spec(&pool.spec);
                prop_assert!(
                    errors.is_empty(),
                    "pool {} parsed with errors {:?}",
                    key,
                    errors
                );
            }
            let first = compile(&store, None);
            let again = compile(&store, Some(&first.table));
            for compiled in [&first, &again] {
                let keys: Vec<_> = compiled.statuses.keys().collect();
                let pools: Vec<_> = store.pools.keys().collect();
                prop_assert_eq!(keys, pools);
                for (key, status) in &compiled.statuses {
                    for kind in ["Accepted", "ResolvedRefs", "Ready"] {
                        let c = status.conditions.iter().find(|c| c.type_ == kind);
                        prop_assert!(
                            c.is_some(),
                            "pool {} has no {} condition: {:?}",
                            key,
                            kind,
                            status
                        );
                        let c = c.expect("checked");
                        prop_assert!(!c.message.is_empty() && !c.reason.is_empty(), "{:?}", c);
                    }
                }
                // A pool in the table for each pool that parsed (valid specs always compile).
                prop_assert_eq!(compiled.table.pools().count(), store.pools.len());
            }
        }
    }
    Ok(())
}

#[test]
fn the_base_file_is_valid_and_uses_every_kind() {
    for json_style in [false, true] {
        let text = to_yaml(&base_documents(), json_style);
        let store = parse(FILE, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            (
                store.services.len(),
                store.slices.len(),
                store.secrets.len(),
                store.pools.len()
            ),
            (1, 1, 1, 3)
        );
        check(&text).expect("the invariants hold");
    }
}

#[test]
fn fuzz_arbitrary_bytes() {
    fuzz(
        "fuzz_config::arbitrary_bytes",
        1000,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            any::<String>(),
            "[-:{}\\[\\],&*!|>'\"%@`#? \n\ta-z0-9]{0,400}",
        ],
        |text| check(&text),
    );
}

#[test]
fn fuzz_almost_valid_files() {
    let base = base_documents();
    fuzz(
        "fuzz_config::almost_valid",
        200,
        (
            prop::collection::vec(site(), 1..5),
            prop::collection::vec(text_edit(), 0..3),
            any::<bool>(),
        ),
        |(sites, text_edits, json_style)| {
            let mut documents = base.clone();
            for s in &sites {
                apply(&mut documents, s);
            }
            let mut text = to_yaml(&documents, json_style);
            for e in &text_edits {
                apply_text(&mut text, e);
            }
            check(&text)
        },
    );
}

/// `n` pools in one `kind: List` document.
fn pools_list(n: usize) -> String {
    let items: String = (0..n)
        .map(|i| {
            format!(
                "  - {{ apiVersion: weir.dev/v1alpha1, kind: LoadBalancerPool, metadata: {{ name: p{i} }}, spec: {{ routes: [{{ host: h{i}.test }}], backends: [{{ service: s, port: 80 }}] }} }}\n"
            )
        })
        .collect();
    format!("apiVersion: v1\nkind: List\nitems:\n{items}")
}

/// `n` pools, one YAML document each.
fn pool_documents(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: p{i} }}\nspec:\n  routes: [{{ host: h{i}.test }}]\n  backends: [{{ service: s, port: 80 }}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Large files are read whole: a List of 2000 pools, and as many separate documents, as
/// `kubectl get -o yaml` and a hand-written multi-document file give them.
#[test]
fn a_file_of_2000_documents_is_read() {
    let list = parse(FILE, &pools_list(2000)).expect("a List of 2000 pools");
    assert_eq!(list.pools.len(), 2000);
    let documents = parse(FILE, &pool_documents(2000)).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.to_string().lines().next().unwrap_or_default().to_string()
        )
    });
    assert_eq!(documents.pools.len(), 2000);
}

/// Inputs built to exhaust a parser: alias bombs, deep nesting, huge scalars and numbers,
/// many documents. Each must be answered (either way) without a panic, a stack overflow or
/// a hang, on a thread with the 2 MiB stack tokio gives the file watcher.
#[test]
fn hostile_documents_are_answered() {
    let mut inputs: Vec<(&str, String)> = Vec::new();
    let mut bomb = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    inputs.push((
        "alias bomb in a pool",
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: x }}\nspec:\n  bomb:\n{}\n  backends: [{{ service: s, port: 80 }}]\n",
            bomb.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
        ),
    ));
    inputs.push((
        "10 000 nested flow lists",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    ));
    inputs.push(("100 000 unclosed flow maps", "{a: ".repeat(100_000)));
    inputs.push((
        "10 000 nested block lists",
        (0..10_000)
            .map(|i| format!("{}- ", " ".repeat(i * 2)))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    inputs.push(("2000 nested block maps", {
        let mut s = String::new();
        for i in 0..2000 {
            s.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        s
    }));
    inputs.push((
        "a 4 MB scalar",
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{ name: \"{}\" }}\n",
            "n".repeat(4 << 20)
        ),
    ));
    inputs.push(("a 10 000 digit number", format!("apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: x }}\nspec:\n  backends: [{{ service: s, port: 80, weight: {} }}]\n", "9".repeat(10_000))));
    inputs.push(("100 000 empty documents", "---\n".repeat(100_000)));
    inputs.push(("a List of 2000 pools", pools_list(2000)));
    inputs.push((
        "a tag on every node",
        "!!map { !!str a: !!seq [ !!int 1, !!float .nan, !!binary aGk= ] }".into(),
    ));
    inputs.push((
        "merge keys",
        "base: &b { apiVersion: v1, kind: Service }\nsvc:\n  <<: *b\n  metadata: { name: m }\n"
            .into(),
    ));
    inputs.push(("an include", "!include /etc/hostname\n".into()));
    inputs.push((
        "NUL and BOM",
        "\u{feff}apiVersion: v1\u{0}\nkind: Service\n".into(),
    ));
    for (what, text) in inputs {
        let text_len = text.len();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(what.to_string())
            .stack_size(2 << 20)
            .spawn(move || {
                let result = check(&text);
                let _ = tx.send(result);
            })
            .expect("a thread");
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(result) => result.unwrap_or_else(|e| panic!("{what}: {e}")),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{what} ({text_len} bytes): panicked (see above)")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("{what} ({text_len} bytes): no answer in 2 minutes (a hang)")
            }
        }
    }
}
