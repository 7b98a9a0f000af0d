//! Single inputs to classify: PNG or JPEG images, the images of an IDX file, or the examples of
//! a `.npy` array, each turned into the values a net's input takes.

use std::path::Path;

use crate::idx::{read_idx, IdxKind};
use crate::mnist::Values;
use crate::npy::{read_npy, NpyData};
use crate::DataError;

/// One example read from a file, with a name to show it by.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The file, and the example's index in it when it holds several (`digits.idx[3]`).
    pub name: String,
    /// The values, channels first.
    pub values: Values,
}

/// Reads every example of `path` for a net whose input is `shape`: a PNG or JPEG image (by its
/// extension) must be exactly `rows × cols` with 1 (grey) or 3 (RGB) channels as the net takes;
/// a `.npy` array (uint8 or float32) is one example of `shape` or `[count, ...shape]`; any other
/// file is read as IDX images (raw or gzipped) of `rows × cols`.
pub fn read_inputs(path: &Path, shape: &[usize]) -> Result<Vec<Input>, DataError> {
    let bad = |why: String| DataError::Input { path: path.to_path_buf(), why };
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if extension == "npy" {
        let npy = read_npy(path)?;
        let single = npy.shape == shape;
        if !single && npy.shape.get(1..) != Some(shape) {
            return Err(bad(format!(
                "holds an array of shape {:?}, but the net takes {shape:?} (or [count, ...])",
                npy.shape
            )));
        }
        let len: usize = shape.iter().product();
        let name = |i: usize| if single { path.display().to_string() } else { format!("{}[{i}]", path.display()) };
        return match npy.data {
            NpyData::Bytes(v) => Ok(v
                .chunks_exact(len.max(1))
                .enumerate()
                .map(|(i, c)| Input { name: name(i), values: Values::Bytes(c.to_vec()) })
                .collect()),
            NpyData::Floats(v) => Ok(v
                .chunks_exact(len.max(1))
                .enumerate()
                .map(|(i, c)| Input { name: name(i), values: Values::Floats(c.to_vec()) })
                .collect()),
            NpyData::Integers(_) => Err(bad("holds integers; inputs are uint8 or float32".into())),
        };
    }
    let &[channels, rows, cols] = shape else {
        return Err(bad(format!("the net's input {shape:?} is not an image [channels, rows, cols]")));
    };
    if matches!(extension.as_str(), "png" | "jpg" | "jpeg") {
        let reader = image::io::Reader::open(path)
            .map_err(|e| DataError::io(path, "opening", e))?
            .with_guessed_format()
            .map_err(|e| DataError::io(path, "reading", e))?;
        let (width, height) = reader.into_dimensions().map_err(|e| bad(format!("not a readable image: {e}")))?;
        if (height as usize, width as usize) != (rows, cols) {
            return Err(bad(format!("the image is {width}×{height} pixels, but the net takes {cols}×{rows}")));
        }
        let decoded = image::open(path).map_err(|e| bad(format!("not a readable image: {e}")))?;
        let pixels = match channels {
            1 => decoded.to_luma8().into_raw(),
            3 => {
                let rgb = decoded.to_rgb8().into_raw();
                // Interleaved RGB to one plane per channel.
                (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<u8>>()).collect()
            }
            _ => return Err(bad(format!("the net takes {channels} channels; images give 1 (grey) or 3 (RGB)"))),
        };
        return Ok(vec![Input { name: path.display().to_string(), values: Values::Bytes(pixels) }]);
    }
    let idx = read_idx(path, IdxKind::Images)?;
    if channels != 1 || idx.dims[1..] != [rows, cols] {
        return Err(bad(format!("holds images of {}×{}, but the net takes {shape:?}", idx.dims[1], idx.dims[2])));
    }
    let len = rows * cols;
    Ok(idx
        .data
        .chunks_exact(len.max(1))
        .enumerate()
        .map(|(i, pixels)| Input { name: format!("{}[{i}]", path.display()), values: Values::Bytes(pixels.to_vec()) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::images;

    #[test]
    fn png_grey_and_rgb_become_channel_planes() {
        let dir = tempfile::tempdir().unwrap();
        let grey = dir.path().join("digit.png");
        image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(10 * y + x) as u8])).save(&grey).unwrap();
        let read = read_inputs(&grey, &[1, 2, 3]).unwrap();
        assert_eq!(read[0].values, Values::Bytes(vec![0, 1, 2, 10, 11, 12]));
        let colour = dir.path().join("photo.PNG");
        image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 10 + x as u8, 20 + x as u8]))
            .save_with_format(&colour, image::ImageFormat::Png)
            .unwrap();
        assert_eq!(read_inputs(&colour, &[3, 1, 2]).unwrap()[0].values, Values::Bytes(vec![0, 1, 10, 11, 20, 21]));
    }

    #[test]
    fn a_wrong_size_or_broken_image_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        image::GrayImage::new(4, 4).save(&path).unwrap();
        let err = read_inputs(&path, &[1, 28, 28]).unwrap_err().to_string();
        assert!(err.contains("big.png: the image is 4×4 pixels, but the net takes 28×28"), "{err}");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = read_inputs(&path, &[1, 4, 4]).unwrap_err().to_string();
        assert!(err.contains("big.png: not a readable image"), "{err}");
        let err = read_inputs(&path, &[784]).unwrap_err().to_string();
        assert!(err.contains("is not an image [channels, rows, cols]"), "{err}");
    }

    #[test]
    fn npy_arrays_give_one_input_or_one_per_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let floats: Vec<u8> = [0.5f32, -1.0, 2.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::write_npy(&path, "<f4", &[2, 2], &floats).unwrap();
        let read = read_inputs(&path, &[2]).unwrap();
        assert_eq!(read[1].values, Values::Floats(vec![2.0, 4.0]));
        assert!(read[1].name.ends_with("x.npy[1]"));
        assert_eq!(read_inputs(&path, &[2, 2]).unwrap()[0].values, Values::Floats(vec![0.5, -1.0, 2.0, 4.0]));
        let err = read_inputs(&path, &[3]).unwrap_err().to_string();
        assert!(err.contains("holds an array of shape [2, 2], but the net takes [3]"), "{err}");
    }

    #[test]
    fn idx_files_give_one_input_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two");
        std::fs::write(&path, images(2, 2, 3)).unwrap();
        let read = read_inputs(&path, &[1, 2, 3]).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].values, Values::Bytes(vec![6, 7, 8, 9, 10, 11]));
        assert!(read[1].name.ends_with("two[1]"));
        let err = read_inputs(&path, &[1, 3, 3]).unwrap_err().to_string();
        assert!(err.contains("holds images of 2×3, but the net takes [1, 3, 3]"), "{err}");
    }
}
