//! A data set of image files in one folder per class: `train/<class>/*.png|jpg|jpeg` and
//! `test/<class>/…`. The class names are the training folder's subfolders in name order; every
//! image must have the size of the first, and the set is grey (one channel) when every image is
//! grey, else RGB (three).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::idx::{hex, MAX_ELEMENTS};
use crate::mnist::{Dataset, FileChecksum, Splits, Values};
use crate::DataError;

/// The two splits' folders.
pub const IMAGE_SPLITS: [&str; 2] = ["train", "test"];

fn is_image(path: &Path) -> bool {
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    matches!(extension.as_str(), "png" | "jpg" | "jpeg")
}

/// The entries of a folder in name order.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "reading folder", e))?;
    let mut paths = entries
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, "reading folder", e)))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    Ok(paths)
}

/// One split's decoded images: RGB planes, labels, whether every image was grey.
struct Decoded {
    planes: Vec<u8>,
    labels: Vec<u8>,
    grey: bool,
}

impl Splits {
    /// Loads `dir/train/<class>/*` and `dir/test/<class>/*` (PNG or JPEG).
    pub fn load_image_folder(dir: &Path) -> Result<Splits, DataError> {
        let train_dir = dir.join(IMAGE_SPLITS[0]);
        let class_dirs: Vec<PathBuf> = sorted_entries(&train_dir)?.into_iter().filter(|p| p.is_dir()).collect();
        let names: Vec<String> = class_dirs
            .iter()
            .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .collect();
        if names.is_empty() || names.len() > 256 {
            return Err(DataError::ClassNames {
                path: train_dir,
                why: format!("{} class folders; an image folder needs 1 to 256, one per class", names.len()),
            });
        }
        let mut size = None;
        let mut checksums = Vec::new();
        let mut decoded = Vec::new();
        for split in IMAGE_SPLITS {
            decoded.push(decode_split(&dir.join(split), &names, &mut size, &mut checksums)?);
        }
        let (width, height) = size.unwrap_or((0, 0));
        let grey = decoded.iter().all(|d| d.grey);
        let channels = if grey { 1 } else { 3 };
        let plane = (width * height) as usize;
        let [train, test] = [0, 1].map(|i| {
            let d = &decoded[i];
            let images: Vec<u8> = if grey {
                // Grey images were expanded to three equal planes: keep one.
                d.planes.chunks_exact(3 * plane.max(1)).flat_map(|image| image[..plane].iter().copied()).collect()
            } else {
                d.planes.clone()
            };
            Dataset {
                images: Values::Bytes(images),
                labels: d.labels.clone(),
                count: d.labels.len(),
                shape: vec![channels, height as usize, width as usize],
                classes: names.len(),
            }
        });
        Ok(Splits { train, test, checksums, class_names: names })
    }
}

fn decode_split(
    split: &Path,
    names: &[String],
    size: &mut Option<(u32, u32)>,
    checksums: &mut Vec<FileChecksum>,
) -> Result<Decoded, DataError> {
    let mut out = Decoded { planes: Vec::new(), labels: Vec::new(), grey: true };
    for class_dir in sorted_entries(split)?.into_iter().filter(|p| p.is_dir()) {
        let name = class_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(label) = names.iter().position(|n| *n == name) else {
            return Err(DataError::ClassNames {
                path: class_dir,
                why: format!("is not a class of the training folder ({})", names.join(", ")),
            });
        };
        for path in sorted_entries(&class_dir)?.into_iter().filter(|p| p.is_file() && is_image(p)) {
            let bad = |why: String| DataError::Input { path: path.clone(), why };
            let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, "reading", e))?;
            let reader = image::io::Reader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .map_err(|e| DataError::io(&path, "reading", e))?;
            let (width, height) = reader.into_dimensions().map_err(|e| bad(format!("not a readable image: {e}")))?;
            let expected = *size.get_or_insert((width, height));
            if (width, height) != expected {
                return Err(bad(format!(
                    "is {width}×{height} pixels, but the first image is {}×{}; every image must have one size",
                    expected.0, expected.1
                )));
            }
            let total = (out.planes.len() as u64).saturating_add(3 * u64::from(width) * u64::from(height));
            if total > MAX_ELEMENTS {
                return Err(bad(format!("the images exceed the limit of {MAX_ELEMENTS} values")));
            }
            let image = image::load_from_memory(&bytes).map_err(|e| bad(format!("not a readable image: {e}")))?;
            out.grey &= !image.color().has_color();
            let rgb = image.to_rgb8().into_raw();
            (0..3).for_each(|c| out.planes.extend(rgb.iter().skip(c).step_by(3)));
            out.labels.push(label as u8);
            checksums.push(FileChecksum {
                name: path.strip_prefix(split.parent().unwrap_or(split)).unwrap_or(&path).display().to_string(),
                path: path.clone(),
                sha256: hex(&Sha256::digest(&bytes)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(dir: &Path, path: &str, w: u32, h: u32, value: u8) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([value])).save(path).unwrap();
    }

    #[test]
    fn class_folders_give_labels_names_and_one_channel_for_grey_images() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "train/cat/a.png", 3, 2, 10);
        grey(dir.path(), "train/cat/b.png", 3, 2, 20);
        grey(dir.path(), "train/dog/c.png", 3, 2, 30);
        grey(dir.path(), "test/dog/d.png", 3, 2, 40);
        let set = Splits::load_image_folder(dir.path()).unwrap();
        assert_eq!(set.class_names, ["cat", "dog"]);
        assert_eq!((set.train.count, &set.train.shape[..], &set.train.labels[..]), (3, &[1, 2, 3][..], &[0, 0, 1][..]));
        assert_eq!(set.train.image(2), Some(&[30u8; 6][..]));
        assert_eq!(set.test.labels, [1]);
        assert_eq!(set.checksums.len(), 4);
        assert_eq!(crate::DataFormat::detect(dir.path()).unwrap(), crate::DataFormat::Images);

        // A colour image makes the set RGB, channel planes first.
        let colour = dir.path().join("train/dog/e.png");
        image::RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3])).save(&colour).unwrap();
        let set = Splits::load_image_folder(dir.path()).unwrap();
        assert_eq!(set.train.shape, [3, 2, 3]);
        assert_eq!(set.train.image(3), Some(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3][..]));
    }

    #[test]
    fn another_size_or_an_unknown_test_class_is_named() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "train/a/1.png", 3, 2, 0);
        grey(dir.path(), "train/a/2.png", 2, 2, 0);
        grey(dir.path(), "test/a/3.png", 3, 2, 0);
        let err = Splits::load_image_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("2.png: is 2×2 pixels, but the first image is 3×2"), "{err}");
        std::fs::remove_file(dir.path().join("train/a/2.png")).unwrap();
        grey(dir.path(), "test/b/4.png", 3, 2, 0);
        let err = Splits::load_image_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a class of the training folder (a)"), "{err}");
    }
}
