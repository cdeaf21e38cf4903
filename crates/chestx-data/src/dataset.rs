//! Either layout behind one door: `chestx train` / `eval` take a folder and get samples.

use crate::chexpert::{ChexpertDataset, SampleOptions};
use crate::nih::{NihBox, NihDataset, NihError};
use crate::samples::{Sample, Split};
use std::path::Path;

#[derive(Debug, Clone)]
pub enum Dataset {
    Nih(NihDataset),
    Chexpert(ChexpertDataset),
}

impl Dataset {
    /// The NIH layout when the folder has a `Data_Entry*.csv`, else the CheXpert layout when it has
    /// `train.csv` and `valid.csv`.
    pub fn open(root: &Path) -> Result<Dataset, NihError> {
        match NihDataset::open(root) {
            Ok(ds) => Ok(Dataset::Nih(ds)),
            Err(NihError::Missing(..)) if ChexpertDataset::detect(root) => {
                ChexpertDataset::open(root).map(Dataset::Chexpert)
            }
            Err(NihError::Missing(dir, _)) => Err(NihError::Missing(
                dir,
                "Data_Entry_2017_v2020.csv, Data_Entry_2017.csv or Data_Entry.csv (NIH layout), \
                 or train.csv and valid.csv (CheXpert layout)"
                    .into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Samples of one split whose image exists, and the listed images that were not found.
    pub fn samples(
        &self,
        split: Split,
        val_fraction: f64,
        seed: u64,
        o: &SampleOptions,
    ) -> (Vec<Sample>, Vec<String>) {
        match self {
            Dataset::Nih(ds) => ds.samples(split, val_fraction, seed),
            Dataset::Chexpert(ds) => ds.samples(split, val_fraction, seed, o),
        }
    }

    /// The table holding a split's per-image metadata (sex, age, view, patient): NIH's
    /// `Data_Entry`, or the CheXpert layout's CSV of that split.
    pub fn metadata_file(&self, split: Split) -> Option<std::path::PathBuf> {
        match self {
            Dataset::Nih(ds) => ds.entry_file(),
            Dataset::Chexpert(ds) => Some(ds.split_file(split)),
        }
    }

    /// Hand-drawn boxes (the NIH release's; none in the CheXpert layout).
    pub fn boxes(&self) -> &[NihBox] {
        match self {
            Dataset::Nih(ds) => &ds.boxes,
            Dataset::Chexpert(_) => &[],
        }
    }

    /// What the user should know about how the folder was read, where there is more to say than
    /// the sample counts.
    pub fn describe(&self) -> Option<String> {
        match self {
            Dataset::Nih(_) => None,
            Dataset::Chexpert(ds) => Some(ds.describe()),
        }
    }
}
