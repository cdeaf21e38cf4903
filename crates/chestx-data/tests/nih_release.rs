//! Opens the real NIH metadata and checks the release's published counts and invariants.

use chestx_data::NihDataset;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

fn nih_dir() -> Option<PathBuf> {
    chestx_testkit::data("nih/meta").map(|p| p.parent().unwrap().to_path_buf())
}

#[test]
fn nih_release_counts_and_invariants() {
    let Some(dir) = nih_dir() else { return };
    let ds = NihDataset::open(&dir).unwrap();
    assert_eq!(ds.entries.len(), 112_120);
    assert_eq!(ds.patients().len(), 30_805);
    assert_eq!((ds.train_val.len(), ds.test.len()), (86_524, 25_596));

    // The official split is patient-wise and covers every image once.
    let patient = |img: &str| {
        ds.entry(img)
            .unwrap_or_else(|| panic!("{img} not in Data_Entry"))
            .patient_id
    };
    let train_p: HashSet<u64> = ds.train_val.iter().map(|i| patient(i)).collect();
    let test_p: HashSet<u64> = ds.test.iter().map(|i| patient(i)).collect();
    assert!(train_p.is_disjoint(&test_p));
    let all: HashSet<&String> = ds.train_val.iter().chain(&ds.test).collect();
    assert_eq!(all.len(), 112_120);

    // 984 boxes on 880 images, each box's finding among its image's labels.
    assert_eq!(ds.boxes.len(), 984);
    let mut per_image: HashMap<&str, usize> = HashMap::new();
    for b in &ds.boxes {
        *per_image.entry(b.image.as_str()).or_default() += 1;
        let e = ds.entry(&b.image).unwrap();
        assert!(
            e.labels[b.finding.index()],
            "{}: box for {} not among its labels",
            b.image,
            b.finding
        );
        assert!(
            b.bbox.w > 0.0 && b.bbox.h > 0.0 && b.bbox.x >= 0.0 && b.bbox.x + b.bbox.w <= 1024.5
        );
    }
    assert_eq!(per_image.len(), 880);

    // A known row, checked by hand against the released CSV.
    let e = ds.entry("00000001_001.png").unwrap();
    assert_eq!(
        (e.patient_id, e.follow_up, e.age, e.view.as_str()),
        (1, 1, Some(58), "PA")
    );
    assert_eq!(e.original_size, (2894, 2729));
    assert!((e.pixel_spacing.0 - 0.143).abs() < 1e-9);

    // The shipped sample images are found in images/.
    assert!(ds.image_path("00000100_000.png").is_some());
}
