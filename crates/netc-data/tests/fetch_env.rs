//! The public `fetch_mnist`, pointed at a loopback server through
//! `NETC_MNIST_MIRROR`. It is the only test in this binary because it sets
//! environment variables, which must not race with other threads.

#[path = "support/netc_data.rs"]
mod data_root;
#[path = "support/server.rs"]
mod server;

use std::collections::HashMap;

use netc_data::{fetch_mnist, DataError, FetchAction, Splits, MNIST_FILES};
use server::{Reply, Server};

#[test]
fn fetch_mnist_uses_the_mirror_variable() {
    for proxy in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        std::env::remove_var(proxy);
    }

    // Garbage under every name: the real checksum table rejects it, and every
    // URL tried is on the loopback mirror.
    let mut routes = HashMap::new();
    for (name, _) in MNIST_FILES {
        routes.insert(format!("/junk/{name}.gz"), Reply::ok(b"not mnist".to_vec()));
    }
    let server = Server::start(routes, 1);
    std::env::set_var("NETC_MNIST_MIRROR", format!("{}/junk", server.base));
    let dest = tempfile::tempdir().unwrap();
    let err = fetch_mnist(dest.path(), false).unwrap_err();
    let DataError::Download { file, attempts, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file, "train-images-idx3-ubyte.gz");
    assert_eq!(attempts.len(), 1, "{err}");
    assert_eq!(attempts[0].0, format!("{}/junk/train-images-idx3-ubyte.gz", server.base));
    assert!(attempts[0].1.contains("SHA-256"), "{err}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    server.finish();

    // With the real files at hand, serve them and fetch end to end.
    let Some(root) = data_root::netc_data() else {
        println!("fetch_mnist end to end: not run (NETC_DATA is not set)");
        return;
    };
    let source = root.join("mnist");
    let mut routes = HashMap::new();
    for (name, _) in MNIST_FILES {
        let file = format!("{name}.gz");
        routes.insert(format!("/real/{file}"), Reply::ok(std::fs::read(source.join(&file)).unwrap()));
    }
    let server = Server::start(routes, 4);
    std::env::set_var("NETC_MNIST_MIRROR", format!("{}/real/", server.base));
    let fetched = fetch_mnist(dest.path(), true).unwrap_or_else(|e| panic!("{e}"));
    assert!(fetched.iter().all(|f| matches!(f.action, FetchAction::Downloaded { .. })));
    let mnist = Splits::load_mnist(dest.path()).unwrap_or_else(|e| panic!("{e}"));
    mnist.verify_checksums(&MNIST_FILES).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.finish().len(), 4);
}
