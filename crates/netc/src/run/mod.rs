//! Compiling a model to IR and running it: lowering with diagnostics ([`compile`]), executors
//! behind the trainer's [`Backend`](netc_train::Backend) trait ([`backend`]), data sets
//! ([`data`]), and training and evaluation ([`training`]).

pub mod backend;
pub mod compile;
pub mod data;
pub mod export;
pub mod predict;
pub mod training;

pub use backend::{count_errors, ExecBackend, InterpBackend};
pub use compile::{compile, fused_text, init_params, ir_text, lower, stage_times, summary, StageTime};
pub use data::{Data, DataRequest};
pub use export::{export_onnx, onnx_model};
pub use predict::{confusion, predict, predictions_json, ClassProbability, Confusion, Prediction};
pub use training::{evaluate, train, train_with, RecordedRun, TrainOverrides, EVAL_BATCH};
