//! kube-proxy: not built yet. Its issue comes later; until then the binary says so and fails,
//! so that nothing pretends to work.

fn main() {
    eprintln!(
        "usage: kube-proxy [flags]\n\nkube-proxy is not implemented yet in this build; see the project's open issues."
    );
    std::process::exit(2);
}
