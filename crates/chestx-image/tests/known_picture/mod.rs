//! The picture the DICOM layout tests build files around, and how a decoded file is compared to it.

/// A diagonal ramp with a bright square, `w × h`, in [0, 1].
pub fn picture(w: usize, h: usize) -> Vec<f64> {
    (0..h * w)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if (20..30).contains(&x) && (10..20).contains(&y) {
                1.0
            } else {
                0.8 * (x + y) as f64 / (w + h) as f64
            }
        })
        .collect()
}

/// Pearson correlation of two pictures of the same size.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}
