// Training: the fine-tuning loop the CLI runs, its schedules, checkpoints and metrics.
export { accuracy, batches, predictLogits, trainEpoch, type EpochResult, type TrainEpochOptions } from './classifier.ts';
export { argmaxRows, classificationMetrics, confusionMatrix, formatReport, topKAccuracy, type ClassMetrics, type Metrics } from './metrics.ts';
export { applySchedule, discriminativeLrs, makeSchedule, SCHEDULES, type OneCycleOptions, type Schedule, type ScheduleName } from './schedule.ts';
export { epochSteps, fit, memoryData, RunFolderError, TooFewImagesError, type FitOptions, type FitResult, type Phase, type TrainData } from './trainer.ts';
export { lrFind, type LrFindOptions, type LrFindResult } from './lr-find.ts';
export { readWeights, RunError, StateFileError } from './checkpoint.ts';
export { buildModel, imageData, type BuiltModel, type ImageDataOptions, type ModelRequest } from './setup.ts';
