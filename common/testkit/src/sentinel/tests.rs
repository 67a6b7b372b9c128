//! The harness's own behaviour: a server whose port was taken before it bound starts again.

#[test]
fn a_server_whose_port_was_taken_starts_again_on_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().port();
    let (tries, dir) = (
        std::cell::Cell::new(0),
        std::sync::Arc::new(super::temp("t")),
    );
    let args = |port| {
        tries.set(tries.get() + 1);
        super::data_args(if tries.get() == 1 { taken } else { port }, &dir, None)
    };
    let server = super::Server::start(args, dir.clone(), "Ready to accept connections");
    assert_eq!((tries.get(), server.port != taken), (2, true));
}
