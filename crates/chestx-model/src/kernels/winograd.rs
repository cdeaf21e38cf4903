//! A 3×3 "same" convolution (stride 1) and its input gradient by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin & Gray 2016), for a CPU.
//!
//! Why: the transition layer is a 3×3 convolution from 2048 channels on a small map, ~18% of a
//! ResNet-50 training step's arithmetic, and libtorch's CPU convolutions (oneDNN, direct
//! algorithm) already run near this machine's peak FLOP rate — fewer multiplications are the only
//! way left to make it faster. F(2×2, 3×3) forms each 2×2 block of outputs from a 4×4 input tile
//! with 16 multiplications per channel pair instead of 36: the work becomes 16 matrix products
//! (one per tile position, MKL's SGEMM) between transformed input tiles `V = Bᵀ d B` and
//! transformed weights `U = G g Gᵀ`, then `Y = Aᵀ M A`. The input gradient is the same product
//! transposed (`dV = dM · Uᵀ`), so it reuses `U` from the forward pass.
//!
//! The tile transforms are written out here as loops over channel blocks (additions only, memory
//! bound); the products go to libtorch. Maps are NHWC in memory (channels-last, what the backbone
//! produces on a CPU); results match libtorch's kernel to float rounding (relative ~1e-6).

use tch::{Device, Kind, Tensor};

/// Transformed positions of a 4×4 input tile.
const POS: usize = 16;
/// Channels handled together in the transforms (one register-friendly block).
const BLOCK: usize = 64;

/// Whether this convolution can run here: an f32 CPU input `[N, C, H, W]` and a `[K, C, 3, 3]`
/// kernel. The caller vouches for stride 1, padding 1, no dilation and one group.
pub fn supports(weight: &Tensor, input: &Tensor) -> bool {
    let kernel_3x3 = weight.size().len() == 4 && weight.size()[2..] == [3, 3];
    input.device() == Device::Cpu
        && input.kind() == Kind::Float
        && weight.kind() == Kind::Float
        && input.dim() == 4
        && kernel_3x3
        && weight.size()[1] == input.size()[1]
}

/// `U = G g Gᵀ` for every (output, input) channel pair of `weight` `[K, C, 3, 3]`, written into
/// `out` `[K, 16, C]` (reallocated when its shape differs; kept between steps by the caller, as
/// fresh pages for ~130 MB cost more than the transform).
pub fn transform_weight(weight: &Tensor, out: &mut Option<Tensor>) {
    tch::no_grad(|| {
        let (k, c, _, _) = weight.size4().expect("4-D weight");
        // [K, 3, 3, C] memory: free for the channels-last weights the optimizer keeps on a CPU.
        let w = weight.permute([0, 2, 3, 1]).contiguous();
        let shape = [k, POS as i64, c];
        if out.as_ref().is_none_or(|u| u.size() != shape) {
            *out = Some(Tensor::empty(shape, (Kind::Float, Device::Cpu)));
        }
        let u = out.as_ref().expect("made above");
        let (k, c) = (k as usize, c as usize);
        let src = Shared::of(&w);
        let dst = Shared::of(u);
        parallel(k, |k_lo, k_hi| {
            for ko in k_lo..k_hi {
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    let mut g = [[0f32; BLOCK]; 9];
                    for (tap, row) in g.iter_mut().enumerate() {
                        // SAFETY: tap < 9 and c0 + len ≤ c: inside w's [K, 3, 3, C] block.
                        row[..len]
                            .copy_from_slice(unsafe { src.get((ko * 9 + tap) * c + c0, len) });
                    }
                    let u = weight_tile(&g);
                    for (pos, row) in u.iter().enumerate() {
                        // SAFETY: inside u's [K, 16, C] block; this thread alone writes row ko.
                        stream_store(
                            unsafe { dst.get_mut((ko * POS + pos) * c + c0, len) },
                            &row[..len],
                        );
                    }
                }
            }
            fence();
        });
    })
}

/// The convolution of `input` `[N, C, H, W]` with the kernel whose transform is `u` `[K, 16, C]`
/// (from [`transform_weight`]), plus `bias` `[K]`: `[N, K, H, W]`, channels-last in memory.
pub fn conv3x3(input: &Tensor, u: &Tensor, bias: Option<&Tensor>) -> Tensor {
    tch::no_grad(|| {
        let (n, c, h, w) = input.size4().expect("4-D input");
        let (k, _, _) = u.size3().expect("3-D transformed kernel");
        let x = input.permute([0, 2, 3, 1]).contiguous();
        let tiles = Tiles::new(n, h, w);
        let v = input_tiles(&x, tiles, c as usize);
        let m = v.bmm(&u.permute([1, 2, 0])); // [16, P, K]
        let bias = bias.map(|b| b.contiguous());
        let y = Tensor::empty([n, h, w, k], (Kind::Float, Device::Cpu));
        output_from_tiles(&m, bias.as_ref(), &y, tiles, k as usize);
        y.permute([0, 3, 1, 2])
    })
}

/// `dL/d(input)` `[N, C, H, W]` (channels-last in memory) of [`conv3x3`] from `dL/d(output)`.
pub fn conv3x3_input_grad(grad_output: &Tensor, u: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let (n, k, h, w) = grad_output.size4().expect("4-D gradient");
        let (_, _, c) = u.size3().expect("3-D transformed kernel");
        let g = grad_output.permute([0, 2, 3, 1]).contiguous();
        let tiles = Tiles::new(n, h, w);
        let dm = output_grad_tiles(&g, tiles, k as usize); // [16, P, K]
        let dv = dm.bmm(&u.permute([1, 0, 2])); // [16, P, C]
        let dx = Tensor::zeros([n, h, w, c], (Kind::Float, Device::Cpu));
        scatter_input_tiles(&dv, &dx, tiles, c as usize);
        dx.permute([0, 3, 1, 2])
    })
}

/// How many 2×2 output tiles cover `n` maps of `h × w` (odd sides round up).
pub fn tile_count(n: i64, h: i64, w: i64) -> i64 {
    Tiles::new(n, h, w).count() as i64
}

/// 2×2 output tiles over `n` maps of `h × w`; tile p = (image, row, column) in that order.
#[derive(Clone, Copy)]
struct Tiles {
    n: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn new(n: i64, h: i64, w: i64) -> Tiles {
        let (n, h, w) = (n as usize, h as usize, w as usize);
        Tiles {
            n,
            h,
            w,
            rows: h.div_ceil(2),
            cols: w.div_ceil(2),
        }
    }

    fn count(&self) -> usize {
        self.n * self.rows * self.cols
    }

    /// Image, first output row and first output column of tile `p`.
    fn origin(&self, p: usize) -> (usize, usize, usize) {
        let per_image = self.rows * self.cols;
        let (img, r) = (p / per_image, p % per_image);
        (img, 2 * (r / self.cols), 2 * (r % self.cols))
    }

    /// Offset of pixel (img, y, x) in an NHWC map with `ch` channels, if inside the map.
    fn at(&self, img: usize, y: isize, x: isize, ch: usize) -> Option<usize> {
        let inside = (0..self.h as isize).contains(&y) && (0..self.w as isize).contains(&x);
        inside.then(|| ((img * self.h + y as usize) * self.w + x as usize) * ch)
    }

    /// Offset of position `pos` (row-major) of the 4×4 input window of the tile at `origin`
    /// (one pixel of padding above and left), if inside the map.
    fn input_at(
        &self,
        (img, y0, x0): (usize, usize, usize),
        pos: usize,
        ch: usize,
    ) -> Option<usize> {
        let (y, x) = (y0 + pos / 4, x0 + pos % 4);
        self.at(img, y as isize - 1, x as isize - 1, ch)
    }

    /// Offset of position `pos` (row-major) of the 2×2 output block of the tile at `origin`, if
    /// inside the map (odd sizes leave the last tiles partly outside).
    fn output_at(
        &self,
        (img, y0, x0): (usize, usize, usize),
        pos: usize,
        ch: usize,
    ) -> Option<usize> {
        self.at(img, (y0 + pos / 2) as isize, (x0 + pos % 2) as isize, ch)
    }
}

/// `V = Bᵀ d B` of every 4×4 input tile (zero outside the map): `[16, P, C]`.
fn input_tiles(x: &Tensor, tiles: Tiles, c: usize) -> Tensor {
    let p_count = tiles.count();
    let v = tile_matrix(p_count, c);
    let (src, dst) = (Shared::of(x), Shared::of(&v));
    tile_blocks(tiles, c, |p, origin, c0, len| {
        let mut d = [[0f32; BLOCK]; POS];
        for (pos, row) in d.iter_mut().enumerate() {
            if let Some(off) = tiles.input_at(origin, pos, c) {
                // SAFETY: a pixel of x's NHWC block, channels [c0, c0 + len).
                row[..len].copy_from_slice(unsafe { src.get(off + c0, len) });
            }
        }
        let t = input_tile(&d);
        for (pos, row) in t.iter().enumerate() {
            // SAFETY: inside v; this thread alone writes channels [c0, c0 + len).
            unsafe { dst.get_mut((pos * p_count + p) * c + c0, len) }.copy_from_slice(&row[..len]);
        }
    });
    v
}

/// `Y = Aᵀ M A` (+ bias) of every tile, written into `y` `[N, H, W, K]` (parts past the map dropped).
fn output_from_tiles(m: &Tensor, bias: Option<&Tensor>, y: &Tensor, tiles: Tiles, k: usize) {
    let p_count = tiles.count();
    let m = m.contiguous();
    let (src, dst) = (Shared::of(&m), Shared::of(y));
    let bias = bias.map(Shared::of);
    tile_blocks(tiles, k, |p, origin, k0, len| {
        let mut t = [[0f32; BLOCK]; POS];
        for (pos, row) in t.iter_mut().enumerate() {
            // SAFETY: inside m's [16, P, K] block.
            row[..len].copy_from_slice(unsafe { src.get((pos * p_count + p) * k + k0, len) });
        }
        let mut out = output_tile(&t);
        if let Some(b) = &bias {
            // SAFETY: bias holds K values.
            let b = unsafe { b.get(k0, len) };
            for row in out.iter_mut() {
                row[..len].iter_mut().zip(b).for_each(|(o, b)| *o += b);
            }
        }
        for (pos, row) in out.iter().enumerate() {
            if let Some(off) = tiles.output_at(origin, pos, k) {
                // SAFETY: a pixel of y; tiles do not overlap in the output and this
                // thread alone writes channels [k0, k0 + len).
                unsafe { dst.get_mut(off + k0, len) }.copy_from_slice(&row[..len]);
            }
        }
    });
}

/// `dM = A e Aᵀ` of every tile's 2×2 output gradient e (zero past the map): `[16, P, K]`.
fn output_grad_tiles(g: &Tensor, tiles: Tiles, k: usize) -> Tensor {
    let p_count = tiles.count();
    let dm = tile_matrix(p_count, k);
    let (src, dst) = (Shared::of(g), Shared::of(&dm));
    tile_blocks(tiles, k, |p, origin, k0, len| {
        let mut e = [[0f32; BLOCK]; 4];
        for (pos, row) in e.iter_mut().enumerate() {
            if let Some(off) = tiles.output_at(origin, pos, k) {
                // SAFETY: a pixel of g, channels [k0, k0 + len).
                row[..len].copy_from_slice(unsafe { src.get(off + k0, len) });
            }
        }
        let t = output_grad_tile(&e);
        for (pos, row) in t.iter().enumerate() {
            // SAFETY: inside dm; this thread alone writes channels [k0, k0 + len).
            unsafe { dst.get_mut((pos * p_count + p) * k + k0, len) }.copy_from_slice(&row[..len]);
        }
    });
    dm
}

/// `B dV Bᵀ` of every tile, added into `dx` `[N, H, W, C]` where the tile lies on the map
/// (neighbouring tiles overlap by two rows or columns).
fn scatter_input_tiles(dv: &Tensor, dx: &Tensor, tiles: Tiles, c: usize) {
    let p_count = tiles.count();
    let dv = dv.contiguous();
    let (src, dst) = (Shared::of(&dv), Shared::of(dx));
    tile_blocks(tiles, c, |p, origin, c0, len| {
        let mut v = [[0f32; BLOCK]; POS];
        for (pos, row) in v.iter_mut().enumerate() {
            // SAFETY: inside dv's [16, P, C] block.
            row[..len].copy_from_slice(unsafe { src.get((pos * p_count + p) * c + c0, len) });
        }
        let d = input_grad_tile(&v);
        for (pos, row) in d.iter().enumerate() {
            if let Some(off) = tiles.input_at(origin, pos, c) {
                // SAFETY: a pixel of dx; this thread alone touches channels [c0, c0 + len).
                let out = unsafe { dst.get_mut(off + c0, len) };
                out.iter_mut().zip(&row[..len]).for_each(|(o, v)| *o += v);
            }
        }
    });
}

/// A `[16, P, ch]` matrix: per tile position, one row of `ch` channels per tile.
fn tile_matrix(tiles: usize, ch: usize) -> Tensor {
    let shape = [POS as i64, tiles as i64, ch as i64];
    Tensor::empty(shape, (Kind::Float, Device::Cpu))
}

/// `f(tile, origin, first channel, channels)` for every tile and every block of `BLOCK` of the
/// `ch` channels, the blocks split between the threads (a thread owns whole channel ranges, so
/// tiles that overlap never have two threads writing one element).
fn tile_blocks(
    tiles: Tiles,
    ch: usize,
    f: impl Fn(usize, (usize, usize, usize), usize, usize) + Sync,
) {
    parallel(ch.div_ceil(BLOCK), |b_lo, b_hi| {
        for p in 0..tiles.count() {
            let origin = tiles.origin(p);
            for c0 in (b_lo * BLOCK..(b_hi * BLOCK).min(ch)).step_by(BLOCK) {
                f(p, origin, c0, BLOCK.min(ch - c0));
            }
        }
    });
}

type Block = [f32; BLOCK];

/// `G g Gᵀ` with G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]; `g` row-major 3×3, result row-major 4×4.
#[inline(always)]
fn weight_tile(g: &[Block; 9]) -> [Block; POS] {
    let mut t = [[0f32; BLOCK]; 12]; // G g: 4×3
    for j in 0..3 {
        for l in 0..BLOCK {
            let (a, b, c) = (g[j][l], g[3 + j][l], g[6 + j][l]);
            t[j][l] = a;
            t[3 + j][l] = 0.5 * (a + b + c);
            t[6 + j][l] = 0.5 * (a - b + c);
            t[9 + j][l] = c;
        }
    }
    let mut u = [[0f32; BLOCK]; POS];
    for i in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c) = (t[3 * i][l], t[3 * i + 1][l], t[3 * i + 2][l]);
            u[4 * i][l] = a;
            u[4 * i + 1][l] = 0.5 * (a + b + c);
            u[4 * i + 2][l] = 0.5 * (a - b + c);
            u[4 * i + 3][l] = c;
        }
    }
    u
}

/// `Bᵀ d B` with Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]].
#[inline(always)]
fn input_tile(d: &[Block; POS]) -> [Block; POS] {
    let mut t = [[0f32; BLOCK]; POS];
    for j in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (d[j][l], d[4 + j][l], d[8 + j][l], d[12 + j][l]);
            t[j][l] = a - c;
            t[4 + j][l] = b + c;
            t[8 + j][l] = c - b;
            t[12 + j][l] = b - e;
        }
    }
    let mut v = [[0f32; BLOCK]; POS];
    for i in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            v[4 * i][l] = a - c;
            v[4 * i + 1][l] = b + c;
            v[4 * i + 2][l] = c - b;
            v[4 * i + 3][l] = b - e;
        }
    }
    v
}

/// `Aᵀ M A` with Aᵀ = [[1,1,1,0],[0,1,−1,−1]]: a 2×2 output tile (row-major in the first 4 rows).
#[inline(always)]
fn output_tile(m: &[Block; POS]) -> [Block; 4] {
    let mut t = [[0f32; BLOCK]; 8]; // Aᵀ M: 2×4
    for j in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
            t[j][l] = a + b + c;
            t[4 + j][l] = b - c - e;
        }
    }
    let mut y = [[0f32; BLOCK]; 4];
    for i in 0..2 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            y[2 * i][l] = a + b + c;
            y[2 * i + 1][l] = b - c - e;
        }
    }
    y
}

/// The transpose of [`output_tile`]: `A e Aᵀ` of a 2×2 gradient `e` (row-major).
#[inline(always)]
fn output_grad_tile(e: &[Block; 4]) -> [Block; POS] {
    let mut t = [[0f32; BLOCK]; 8]; // A e: 4×2
    for j in 0..2 {
        for l in 0..BLOCK {
            let (a, b) = (e[j][l], e[2 + j][l]);
            t[j][l] = a;
            t[2 + j][l] = a + b;
            t[4 + j][l] = a - b;
            t[6 + j][l] = -b;
        }
    }
    let mut m = [[0f32; BLOCK]; POS];
    for i in 0..4 {
        for l in 0..BLOCK {
            let (a, b) = (t[2 * i][l], t[2 * i + 1][l]);
            m[4 * i][l] = a;
            m[4 * i + 1][l] = a + b;
            m[4 * i + 2][l] = a - b;
            m[4 * i + 3][l] = -b;
        }
    }
    m
}

/// The transpose of [`input_tile`]: `B v Bᵀ`.
#[inline(always)]
fn input_grad_tile(v: &[Block; POS]) -> [Block; POS] {
    let mut t = [[0f32; BLOCK]; POS];
    for j in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (v[j][l], v[4 + j][l], v[8 + j][l], v[12 + j][l]);
            t[j][l] = a;
            t[4 + j][l] = b - c + e;
            t[8 + j][l] = b + c - a;
            t[12 + j][l] = -e;
        }
    }
    let mut d = [[0f32; BLOCK]; POS];
    for i in 0..4 {
        for l in 0..BLOCK {
            let (a, b, c, e) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            d[4 * i][l] = a;
            d[4 * i + 1][l] = b - c + e;
            d[4 * i + 2][l] = b + c - a;
            d[4 * i + 3][l] = -e;
        }
    }
    d
}

/// A dense f32 CPU tensor's memory, shared between the transform threads.
#[derive(Clone, Copy)]
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tensors outlive the scoped threads that use them, and each thread writes only
// elements no other thread reads or writes (see each caller).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// `t` must be a contiguous f32 CPU tensor.
    fn of(t: &Tensor) -> Shared {
        assert!(
            t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous(),
            "winograd: expected a contiguous f32 CPU tensor"
        );
        Shared {
            ptr: t.data_ptr() as *mut f32,
            len: t.numel(),
        }
    }

    /// # Safety
    /// No other thread may write `[off, off + len)` meanwhile.
    unsafe fn get(&self, off: usize, len: usize) -> &[f32] {
        assert!(off + len <= self.len);
        std::slice::from_raw_parts(self.ptr.add(off), len)
    }

    /// # Safety
    /// No other thread may touch `[off, off + len)` meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut(&self, off: usize, len: usize) -> &mut [f32] {
        assert!(off + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(off), len)
    }
}

/// `dst.copy_from_slice(src)`, bypassing the cache where the CPU can (AVX streaming stores, for
/// 32-byte-aligned runs): the ~130 MB transformed kernel is written once per step and read back
/// only after far more than a cache's worth of other data, so an ordinary store would first read
/// every line it overwrites — twice the memory traffic for nothing. Call [`fence`] before another
/// thread reads `dst`.
#[inline(always)]
fn stream_store(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_stream_ps};
        // SAFETY: any bits are a valid __m256; the split only locates the aligned part.
        let (head, body, _) = unsafe { dst.align_to_mut::<std::arch::x86_64::__m256>() };
        if head.is_empty() && !body.is_empty() {
            let lanes = body.len() * 8;
            let p = dst.as_mut_ptr();
            for i in (0..lanes).step_by(8) {
                // SAFETY: AVX is present; p + i is 32-byte aligned (align_to found no head) and
                // i + 8 ≤ lanes ≤ dst.len() = src.len().
                unsafe { _mm256_stream_ps(p.add(i), _mm256_loadu_ps(src.as_ptr().add(i))) };
            }
            dst[lanes..].copy_from_slice(&src[lanes..]);
            return;
        }
    }
    dst.copy_from_slice(src)
}

/// Orders earlier streaming stores before whatever this thread does next (ending the scope that
/// another thread then joins).
#[inline(always)]
fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// `f(lo, hi)` over `0..n` in contiguous shares, one per intra-op thread (the caller takes the last).
fn parallel(n: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = (tch::get_num_threads().max(1) as usize).min(n.max(1));
    std::thread::scope(|scope| {
        for i in 0..threads {
            let (lo, hi) = (n * i / threads, n * (i + 1) / threads);
            let f = &f;
            if i + 1 == threads {
                with_simd(|| f(lo, hi));
            } else {
                scope.spawn(move || with_simd(|| f(lo, hi)));
            }
        }
    });
}

/// `f` compiled for AVX2 where the CPU has it: the transforms are loops over 64-channel blocks,
/// and the portable build's SSE2 does 4 lanes a step instead of 8. (Additions and halvings only,
/// so the results are the same bit for bit.)
#[inline(always)]
fn with_simd(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(f: impl FnOnce()) {
            f()
        }
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { avx2(f) };
    }
    f()
}
