//! The one seam between "a network" and everything that uses one.

use chestx_core::CellGrid;
use chestx_model::ChestNet;
use tch::Tensor;

/// A network that scores square, normalized films for findings and can say where it looked.
///
/// Evaluation, prediction and heatmaps take `&dyn Classifier`: our own runs and imported published
/// models alike ([`ChestNet`]; a published classifier is one without the transition layer). Every map is `[B, C, h, w]` on the network's device; a map's
/// cells sit on the input as its [`CellGrid`] says.
pub trait Classifier {
    /// Class names, in output order.
    fn classes(&self) -> &[String];
    /// Side of the square input, in pixels.
    fn input_size(&self) -> i64;
    /// How a film becomes the input (a published model's own chain, else ImageNet's).
    fn preprocess(&self) -> chestx_image::Preprocess;
    /// Backbone stages whose maps LayerCAM can read (1..=stages).
    fn stages(&self) -> usize;
    /// The network in a few words (for reports and prediction files).
    fn describe(&self) -> String;
    /// Logits `[B, C]`, without gradients.
    fn logits(&self, images: &Tensor) -> Tensor;
    /// Logits and the paper's class activation maps (prediction weights over the transition output).
    fn cams(&self, images: &Tensor) -> (Tensor, Tensor);
    /// Logits and Grad-CAM maps on the backbone's last feature map.
    fn grad_cams(&self, images: &Tensor) -> (Tensor, Tensor);
    /// Logits (every class) and one LayerCAM map per stage in `stages`, of the listed classes
    /// only (`[B, classes.len(), h, w]`, in that order): one backward pass per class listed.
    fn layer_cams(
        &self,
        images: &Tensor,
        stages: &[usize],
        classes: &[usize],
    ) -> (Tensor, Vec<Tensor>);
    /// Where the cells of the last map (CAM, Grad-CAM) sit on the input.
    fn cell_grid(&self) -> CellGrid;
    /// Where the cells of stage `stage`'s map sit on the input.
    fn layer_grid(&self, stage: usize) -> CellGrid;
}

impl Classifier for ChestNet {
    fn classes(&self) -> &[String] {
        &self.config.classes
    }
    fn input_size(&self) -> i64 {
        self.config.input_size
    }
    fn preprocess(&self) -> chestx_image::Preprocess {
        self.config.preprocess
    }
    fn stages(&self) -> usize {
        self.config.arch.layers()
    }
    fn describe(&self) -> String {
        let c = &self.config;
        if c.transition {
            format!(
                "{} + transition {} + {:?}",
                c.arch, c.transition_dim, c.pooling
            )
        } else {
            format!("{} + {:?} + linear", c.arch, c.pooling)
        }
    }
    fn logits(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward(images, false).logits)
    }
    fn cams(&self, images: &Tensor) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let f = self.forward(images, false);
            let cam = self.cam(&f.transition);
            (f.logits, cam)
        })
    }
    fn grad_cams(&self, images: &Tensor) -> (Tensor, Tensor) {
        ChestNet::grad_cams(self, images)
    }
    fn layer_cams(
        &self,
        images: &Tensor,
        stages: &[usize],
        classes: &[usize],
    ) -> (Tensor, Vec<Tensor>) {
        ChestNet::layer_cams_of(self, images, stages, classes)
    }
    fn cell_grid(&self) -> CellGrid {
        ChestNet::cell_grid(self)
    }
    fn layer_grid(&self, stage: usize) -> CellGrid {
        ChestNet::layer_grid(self, stage)
    }
}
