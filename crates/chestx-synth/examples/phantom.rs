//! Write a small phantom dataset: `cargo run -p chestx-synth --example phantom -- OUT [BACKGROUND_DIR]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::Path::new(&args[1]);
    let bg = match args.get(2) {
        Some(d) => chestx_synth::Backgrounds::from_dir(std::path::Path::new(d)).unwrap(),
        None => chestx_synth::Backgrounds::Procedural(8),
    };
    let cfg = chestx_synth::SynthConfig {
        n: 12,
        size: 256,
        seed: 1,
        ..Default::default()
    };
    let s = chestx_synth::write_dataset(&bg, out, &cfg, &|| {}).unwrap();
    println!("{s:?}");
}
