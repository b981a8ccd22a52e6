//! Print a `.pth` file's tensors: `cargo run -p sfumato-zoo --example pth_keys -- FILE.pth`.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pth_keys FILE.pth");
        std::process::exit(2);
    };
    match sfumato_zoo::pth::load_pth(std::path::Path::new(&path), None) {
        Ok(t) => {
            for (name, t) in &t {
                println!("{name} {} {:?}", t.dtype(), t.dims());
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
