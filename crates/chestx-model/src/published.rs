//! Published chest X-ray classifiers as chestx networks: torchxrayvision's DenseNet-121 and ResNet
//! weight sets, and CheXNet DenseNet-121 checkpoints.
//!
//! Each is a [`ChestNet`] without the transition layer — backbone → ReLU → global average →
//! linear — which is exactly their shape. So once imported, prediction, heatmaps (CAM is Zhou et
//! al.'s original on the last map; Grad-CAM and LayerCAM as for our runs), evaluation, serving and
//! fine-tuning treat them like one of our runs. What is the source's own travels with the config:
//! its class names in its output order, its preprocessing ([`Preprocess`]) and, from the file, its
//! operating thresholds (`op_threshs`).

use crate::backbone::Arch;
use crate::import::{self, ImportError, ImportReport};
use crate::net::{ChestNet, ModelConfig};
use crate::pool::Pooling;
use chestx_image::Preprocess;
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// Which library's conventions a file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// torchxrayvision (`xrv.models.DenseNet` / `ResNet` state dicts): 1 channel, 18 outputs.
    Torchxrayvision,
    /// CheXNet re-implementations (torchvision DenseNet-121, `module.densenet121.` keys, the
    /// classifier as `Sequential(Linear, Sigmoid)`): 3 channels, 14 outputs.
    Chexnet,
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Source, String> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "torchxrayvision" | "xrv" => Ok(Source::Torchxrayvision),
            "chexnet" => Ok(Source::Chexnet),
            _ => Err(format!("unknown source {s:?} (torchxrayvision or chexnet)")),
        }
    }
}

/// torchxrayvision's 18 outputs, in its order (`xrv.datasets.default_pathologies`).
pub const XRV_TARGETS: [&str; 18] = [
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
];

/// CheXNet's 14 outputs, in its order (the NIH release's).
pub const CHEXNET_CLASSES: [&str; 14] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
];

/// A torchxrayvision weight set: its input side and the outputs it was trained on (indices into
/// [`XRV_TARGETS`]; the others are blank labels there and carry no meaning).
pub fn xrv_weight_set(name: &str) -> Option<(i64, Vec<usize>)> {
    let all: Vec<usize> = (0..18).collect();
    let mimic_chex = vec![0, 1, 3, 4, 7, 8, 10, 14, 15, 16, 17];
    let set = match name.trim_start_matches("densenet121-res224-") {
        "all" => (224, all),
        "nih" => (224, (0..14).collect()),
        "pc" => (224, (0..14).chain([15]).collect()),
        "chex" | "mimic_nb" | "mimic_ch" => (224, mimic_chex),
        "rsna" => (224, vec![8, 16]),
        "resnet50-res512-all" => (512, all),
        _ => return None,
    };
    Some(set)
}

/// The names [`xrv_weight_set`] knows, for error messages.
pub const XRV_WEIGHT_SETS: &str =
    "densenet121-res224-{all,nih,pc,chex,mimic_nb,mimic_ch,rsna}, resnet50-res512-all";

/// A published model, loaded.
pub struct Imported {
    pub config: ModelConfig,
    pub source: Source,
    /// Classes the weights were not trained on (never called positive).
    pub untrained: Vec<String>,
    /// The file's operating thresholds per class (`op_threshs`), NaN where it has none.
    pub op_threshs: Option<Vec<f32>>,
    pub report: ImportReport,
}

/// Read a published state dict, build its network under `vs` and load every weight into it.
/// `weight_set` names a torchxrayvision weight set (which outputs are trained, which input side);
/// without it all 18 outputs count as trained. Refuses a file that does not fill the network whole.
pub fn import(
    vs: &VarStore,
    path: &Path,
    source: Source,
    weight_set: Option<&str>,
) -> Result<(ChestNet, Imported), ImportError> {
    let err = |msg: String| ImportError::Read {
        path: path.display().to_string(),
        msg,
    };
    let tensors = import::read_tensors(path)?;
    let arch = detect_arch(&tensors).ok_or_else(|| {
        err(format!(
            "neither a DenseNet-121 nor a ResNet-50/101 state dict (keys look like {:?})",
            tensors.keys().take(5).collect::<Vec<_>>()
        ))
    })?;
    let (weight, bias) = classifier(&tensors)
        .ok_or_else(|| err("no classifier (`classifier.`, `classifier.0.` or `fc.` weight and bias): a backbone alone is for `chestx import-weights`".into()))?;
    let outputs = weight.size()[0];
    let first = tensors
        .iter()
        .find(|(k, _)| {
            k.ends_with("conv0.weight") || (k.ends_with("conv1.weight") && !k.contains("layer"))
        })
        .map(|(_, t)| t.size()[1])
        .unwrap_or(3);
    let (classes, trained, input_size, preprocess) =
        layout(source, arch, outputs, weight_set).map_err(err)?;
    if first != preprocess.channels() as i64 {
        return Err(err(format!(
            "the first convolution takes {first} channel(s), but {source:?} models take {}",
            preprocess.channels()
        )));
    }
    let mut config = ModelConfig::new(arch, classes);
    config.transition = false;
    config.pooling = Pooling::Avg;
    config.input_size = input_size;
    config.in_channels = first;
    config.preprocess = preprocess;
    let net = ChestNet::new(&vs.root(), config.clone());
    let report = import::load_backbone(vs, arch, &tensors, path)?;
    if let Some((k, f, m)) = report.shape_mismatch.first() {
        return Err(err(format!(
            "{k}: shape {f:?} in the file, {m:?} in {arch}"
        )));
    }
    if let Some(k) = report.missing.first() {
        return Err(err(format!(
            "{} backbone weights missing (first: {k})",
            report.missing.len()
        )));
    }
    copy_classifier(vs, &weight, &bias).map_err(err)?;
    let op_threshs = op_threshs(&tensors, outputs).map_err(err)?;
    let untrained = config
        .classes
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            !trained.contains(i) || op_threshs.as_ref().is_some_and(|v| v[*i].is_nan())
        })
        .map(|(_, c)| c.clone())
        .collect();
    Ok((
        net,
        Imported {
            config,
            source,
            untrained,
            op_threshs,
            report,
        },
    ))
}

/// The source's classes in its output order, the outputs trained, the input side and the chain.
fn layout(
    source: Source,
    arch: Arch,
    outputs: i64,
    weight_set: Option<&str>,
) -> Result<(Vec<String>, Vec<usize>, i64, Preprocess), String> {
    match source {
        Source::Torchxrayvision => {
            if outputs != 18 {
                return Err(format!("{outputs} outputs: torchxrayvision models have 18"));
            }
            let default_side = if arch == Arch::Densenet121 { 224 } else { 512 };
            let (side, trained) = match weight_set {
                Some(w) => xrv_weight_set(w).ok_or_else(|| {
                    format!("unknown weight set {w:?} (one of {XRV_WEIGHT_SETS})")
                })?,
                None => (default_side, (0..18).collect()),
            };
            let names = XRV_TARGETS.iter().map(|s| s.to_string()).collect();
            Ok((names, trained, side, Preprocess::Xrv))
        }
        Source::Chexnet => {
            if outputs != 14 {
                return Err(format!("{outputs} outputs: CheXNet has 14"));
            }
            let names = CHEXNET_CLASSES.iter().map(|s| s.to_string()).collect();
            Ok((
                names,
                (0..14).collect(),
                224,
                Preprocess::Chexnet { resize: 256 },
            ))
        }
    }
}

/// The file's `op_threshs` buffer (torchxrayvision saves it with the weights), one per output.
fn op_threshs(
    tensors: &BTreeMap<String, Tensor>,
    outputs: i64,
) -> Result<Option<Vec<f32>>, String> {
    let Some(t) = tensors.get("op_threshs") else {
        return Ok(None);
    };
    let v: Vec<f32> = Vec::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1))
        .map_err(|e: tch::TchError| e.to_string())?;
    if v.len() as i64 != outputs {
        return Err(format!(
            "op_threshs has {} values for {outputs} outputs",
            v.len()
        ));
    }
    Ok(Some(v))
}

/// DenseNet-121 when dense blocks are there; a ResNet by its layer3 depth (6 blocks: 50, 23: 101).
fn detect_arch(tensors: &BTreeMap<String, Tensor>) -> Option<Arch> {
    let has = |s: &str| tensors.keys().any(|k| k.contains(s));
    if has("denseblock4.") {
        Some(Arch::Densenet121)
    } else if has("layer3.22.") {
        Some(Arch::Resnet101)
    } else if has("layer4.2.conv3.") {
        Some(Arch::Resnet50)
    } else {
        None
    }
}

/// The classifier's weight and bias, under any of the published spellings.
fn classifier(tensors: &BTreeMap<String, Tensor>) -> Option<(Tensor, Tensor)> {
    let strip = |k: &str| {
        let mut k = k;
        for p in ["module.", "model.", "densenet121."] {
            k = k.strip_prefix(p).unwrap_or(k);
        }
        k.to_string()
    };
    let find = |name: &str| {
        tensors
            .iter()
            .find(|(k, _)| {
                let k = strip(k);
                ["classifier.", "classifier.0.", "fc."]
                    .iter()
                    .any(|p| k == format!("{p}{name}"))
            })
            .map(|(_, t)| t.shallow_clone())
    };
    Some((find("weight")?, find("bias")?))
}

fn copy_classifier(vs: &VarStore, weight: &Tensor, bias: &Tensor) -> Result<(), String> {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, t) in [("prediction.weight", weight), ("prediction.bias", bias)] {
            let v = &vars[name];
            if v.size() != t.size() {
                return Err(format!(
                    "classifier {name}: shape {:?} in the file, {:?} in the network",
                    t.size(),
                    v.size()
                ));
            }
            v.shallow_clone().copy_(&t.to_device(v.device()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_sets_mark_what_they_were_trained_on() {
        let (side, nih) = xrv_weight_set("densenet121-res224-nih").unwrap();
        assert_eq!((side, nih.len()), (224, 14));
        let (_, rsna) = xrv_weight_set("rsna").unwrap();
        let names: Vec<&str> = rsna.iter().map(|&i| XRV_TARGETS[i]).collect();
        assert_eq!(names, ["Pneumonia", "Lung Opacity"]);
        assert_eq!(xrv_weight_set("resnet50-res512-all").unwrap().0, 512);
        assert!(xrv_weight_set("densenet121-res224-imagenet").is_none());
        assert_eq!("XRV".parse::<Source>(), Ok(Source::Torchxrayvision));
        assert!("timm".parse::<Source>().is_err());
    }
}
