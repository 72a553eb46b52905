// The official ONNX backend test cases (Debian's libonnx-testdata) for the ops of gpunet's registry
// (src/onnx/ops/), run through GraphModule by src/onnx/backend-test.ts: every case listed here must
// pass. The list is every case of node/, pytorch-converted/, pytorch-operator/ and simple/ that
// `gpunet onnx-test` passes; the others use ops or features gpunet refuses (with a one-line
// reason: `gpunet onnx-test DIR` prints it): 3-D convolution and pooling, MaxPool's Indices output,
// Dropout's mask output, BatchNormalization's running statistics outputs (training_mode),
// ops gpunet computes only on constants (Floor, Equal, ...), types other than float32 on the GPU
// (double, float16, uint8, ...), training-mode Dropout's random masks (onnx's own random
// numbers), sequences and optionals. Where the expected output is NaN (sqrt of a negative), the
// case asks for NaN.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackendCase } from '../src/onnx/backend-test.ts';
import { useGpu } from './helpers.ts';

useGpu();

const DATA = '/usr/share/libonnx-testdata/data';

const CASES = {
  'node': [
    'test_abs', 'test_add', 'test_add_bcast', 'test_add_uint8', 'test_and2d', 'test_and3d',
    'test_and4d', 'test_and_bcast3v1d', 'test_and_bcast3v2d', 'test_and_bcast4v2d',
    'test_and_bcast4v3d', 'test_and_bcast4v4d', 'test_averagepool_1d_default',
    'test_averagepool_2d_ceil', 'test_averagepool_2d_default', 'test_averagepool_2d_pads',
    'test_averagepool_2d_pads_count_include_pad', 'test_averagepool_2d_precomputed_pads',
    'test_averagepool_2d_precomputed_pads_count_include_pad',
    'test_averagepool_2d_precomputed_same_upper', 'test_averagepool_2d_precomputed_strides',
    'test_averagepool_2d_same_lower', 'test_averagepool_2d_same_upper', 'test_averagepool_2d_strides',
    'test_basic_conv_with_padding', 'test_basic_conv_without_padding', 'test_batchnorm_epsilon',
    'test_batchnorm_example', 'test_clip', 'test_clip_default_inbounds',
    'test_clip_default_int8_inbounds', 'test_clip_default_int8_max', 'test_clip_default_int8_min',
    'test_clip_default_max', 'test_clip_default_min', 'test_clip_example', 'test_clip_inbounds',
    'test_clip_outbounds', 'test_clip_splitbounds', 'test_concat_1d_axis_0',
    'test_concat_1d_axis_negative_1', 'test_concat_2d_axis_0', 'test_concat_2d_axis_1',
    'test_concat_2d_axis_negative_1', 'test_concat_2d_axis_negative_2', 'test_concat_3d_axis_0',
    'test_concat_3d_axis_1', 'test_concat_3d_axis_2', 'test_concat_3d_axis_negative_1',
    'test_concat_3d_axis_negative_2', 'test_concat_3d_axis_negative_3', 'test_constant',
    'test_constant_pad', 'test_constantofshape_float_ones', 'test_constantofshape_int_shape_zero',
    'test_constantofshape_int_zeros', 'test_conv_with_autopad_same',
    'test_conv_with_strides_and_asymmetric_padding', 'test_conv_with_strides_no_padding',
    'test_conv_with_strides_padding', 'test_div', 'test_div_bcast', 'test_div_example',
    'test_div_uint8', 'test_dropout_default', 'test_dropout_default_old', 'test_dropout_default_ratio',
    'test_dropout_random_old', 'test_equal', 'test_equal_bcast', 'test_erf', 'test_exp',
    'test_exp_example', 'test_expand_dim_changed', 'test_expand_dim_unchanged', 'test_flatten_axis0',
    'test_flatten_axis1', 'test_flatten_axis2', 'test_flatten_axis3', 'test_flatten_default_axis',
    'test_flatten_negative_axis1', 'test_flatten_negative_axis2', 'test_flatten_negative_axis3',
    'test_flatten_negative_axis4', 'test_gather_0', 'test_gather_1', 'test_gather_2d_indices',
    'test_gather_negative_indices', 'test_gemm_all_attributes', 'test_gemm_alpha', 'test_gemm_beta',
    'test_gemm_default_matrix_bias', 'test_gemm_default_no_bias', 'test_gemm_default_scalar_bias',
    'test_gemm_default_single_elem_vector_bias', 'test_gemm_default_vector_bias',
    'test_gemm_default_zero_bias', 'test_gemm_transposeA', 'test_gemm_transposeB',
    'test_globalaveragepool', 'test_globalaveragepool_precomputed', 'test_globalmaxpool',
    'test_globalmaxpool_precomputed', 'test_hardsigmoid', 'test_hardsigmoid_default',
    'test_hardsigmoid_example', 'test_hardswish', 'test_hardswish_expanded', 'test_identity',
    'test_layer_normalization_2d_axis0', 'test_layer_normalization_2d_axis0_expanded',
    'test_layer_normalization_2d_axis1', 'test_layer_normalization_2d_axis1_expanded',
    'test_layer_normalization_2d_axis_negative_1',
    'test_layer_normalization_2d_axis_negative_1_expanded',
    'test_layer_normalization_2d_axis_negative_2',
    'test_layer_normalization_2d_axis_negative_2_expanded', 'test_layer_normalization_3d_axis0_epsilon',
    'test_layer_normalization_3d_axis0_epsilon_expanded', 'test_layer_normalization_3d_axis1_epsilon',
    'test_layer_normalization_3d_axis1_epsilon_expanded', 'test_layer_normalization_3d_axis2_epsilon',
    'test_layer_normalization_3d_axis2_epsilon_expanded',
    'test_layer_normalization_3d_axis_negative_1_epsilon',
    'test_layer_normalization_3d_axis_negative_1_epsilon_expanded',
    'test_layer_normalization_3d_axis_negative_2_epsilon',
    'test_layer_normalization_3d_axis_negative_2_epsilon_expanded',
    'test_layer_normalization_3d_axis_negative_3_epsilon',
    'test_layer_normalization_3d_axis_negative_3_epsilon_expanded', 'test_layer_normalization_4d_axis0',
    'test_layer_normalization_4d_axis0_expanded', 'test_layer_normalization_4d_axis1',
    'test_layer_normalization_4d_axis1_expanded', 'test_layer_normalization_4d_axis2',
    'test_layer_normalization_4d_axis2_expanded', 'test_layer_normalization_4d_axis3',
    'test_layer_normalization_4d_axis3_expanded', 'test_layer_normalization_4d_axis_negative_1',
    'test_layer_normalization_4d_axis_negative_1_expanded',
    'test_layer_normalization_4d_axis_negative_2',
    'test_layer_normalization_4d_axis_negative_2_expanded',
    'test_layer_normalization_4d_axis_negative_3',
    'test_layer_normalization_4d_axis_negative_3_expanded',
    'test_layer_normalization_4d_axis_negative_4',
    'test_layer_normalization_4d_axis_negative_4_expanded', 'test_layer_normalization_default_axis',
    'test_layer_normalization_default_axis_expanded', 'test_leakyrelu', 'test_leakyrelu_default',
    'test_leakyrelu_example', 'test_log', 'test_log_example', 'test_logsoftmax_axis_0',
    'test_logsoftmax_axis_0_expanded', 'test_logsoftmax_axis_1', 'test_logsoftmax_axis_1_expanded',
    'test_logsoftmax_axis_2', 'test_logsoftmax_axis_2_expanded', 'test_logsoftmax_default_axis',
    'test_logsoftmax_default_axis_expanded', 'test_logsoftmax_example_1',
    'test_logsoftmax_example_1_expanded', 'test_logsoftmax_large_number',
    'test_logsoftmax_large_number_expanded', 'test_logsoftmax_negative_axis',
    'test_logsoftmax_negative_axis_expanded', 'test_matmul_2d', 'test_matmul_3d', 'test_matmul_4d',
    'test_max_example', 'test_max_float32', 'test_max_int32', 'test_max_int64', 'test_max_int8',
    'test_max_one_input', 'test_max_two_inputs', 'test_max_uint8', 'test_maxpool_1d_default',
    'test_maxpool_2d_ceil', 'test_maxpool_2d_default', 'test_maxpool_2d_dilations',
    'test_maxpool_2d_pads', 'test_maxpool_2d_precomputed_pads',
    'test_maxpool_2d_precomputed_same_upper', 'test_maxpool_2d_precomputed_strides',
    'test_maxpool_2d_same_lower', 'test_maxpool_2d_same_upper', 'test_maxpool_2d_strides',
    'test_min_example', 'test_min_float32', 'test_min_int32', 'test_min_int64', 'test_min_int8',
    'test_min_one_input', 'test_min_two_inputs', 'test_min_uint8', 'test_mod_broadcast',
    'test_mod_int64_fmod', 'test_mod_mixed_sign_int32', 'test_mod_mixed_sign_int64',
    'test_mod_mixed_sign_int8', 'test_mod_uint8', 'test_mul', 'test_mul_bcast', 'test_mul_example',
    'test_mul_uint8', 'test_mvn_expanded', 'test_neg', 'test_neg_example', 'test_not_2d', 'test_not_3d',
    'test_not_4d', 'test_or2d', 'test_or3d', 'test_or4d', 'test_or_bcast3v1d', 'test_or_bcast3v2d',
    'test_or_bcast4v2d', 'test_or_bcast4v3d', 'test_or_bcast4v4d', 'test_pow', 'test_pow_bcast_array',
    'test_pow_bcast_scalar', 'test_pow_example', 'test_pow_types_float32_int32',
    'test_pow_types_float32_int64', 'test_pow_types_int', 'test_pow_types_int32_int32',
    'test_pow_types_int64_int64', 'test_range_int32_type_negative_delta', 'test_reciprocal',
    'test_reciprocal_example', 'test_reduce_max_default_axes_keepdim_example',
    'test_reduce_max_default_axes_keepdims_random', 'test_reduce_max_do_not_keepdims_example',
    'test_reduce_max_do_not_keepdims_random', 'test_reduce_max_keepdims_example',
    'test_reduce_max_keepdims_random', 'test_reduce_max_negative_axes_keepdims_example',
    'test_reduce_max_negative_axes_keepdims_random', 'test_reduce_mean_default_axes_keepdims_example',
    'test_reduce_mean_default_axes_keepdims_random', 'test_reduce_mean_do_not_keepdims_example',
    'test_reduce_mean_do_not_keepdims_random', 'test_reduce_mean_keepdims_example',
    'test_reduce_mean_keepdims_random', 'test_reduce_mean_negative_axes_keepdims_example',
    'test_reduce_mean_negative_axes_keepdims_random', 'test_reduce_sum_default_axes_keepdims_example',
    'test_reduce_sum_default_axes_keepdims_random', 'test_reduce_sum_do_not_keepdims_example',
    'test_reduce_sum_do_not_keepdims_random', 'test_reduce_sum_empty_axes_input_noop_example',
    'test_reduce_sum_empty_axes_input_noop_random', 'test_reduce_sum_keepdims_example',
    'test_reduce_sum_keepdims_random', 'test_reduce_sum_negative_axes_keepdims_example',
    'test_reduce_sum_negative_axes_keepdims_random', 'test_relu', 'test_reshape_allowzero_reordered',
    'test_reshape_extended_dims', 'test_reshape_negative_dim', 'test_reshape_negative_extended_dims',
    'test_reshape_one_dim', 'test_reshape_reduced_dims', 'test_reshape_reordered_all_dims',
    'test_reshape_reordered_last_dims', 'test_reshape_zero_and_negative_dim', 'test_reshape_zero_dim',
    'test_sce_NCd1_mean_weight_negative_ii', 'test_sce_NCd1_mean_weight_negative_ii_log_prob',
    'test_sce_NCd1d2d3_none_no_weight_negative_ii',
    'test_sce_NCd1d2d3_none_no_weight_negative_ii_log_prob', 'test_sce_NCd1d2d3_sum_weight_high_ii',
    'test_sce_NCd1d2d3_sum_weight_high_ii_log_prob', 'test_sce_NCd1d2d3d4d5_mean_weight',
    'test_sce_NCd1d2d3d4d5_mean_weight_log_prob', 'test_sce_NCd1d2d3d4d5_none_no_weight',
    'test_sce_NCd1d2d3d4d5_none_no_weight_log_prob', 'test_sce_mean', 'test_sce_mean_3d',
    'test_sce_mean_3d_log_prob', 'test_sce_mean_log_prob', 'test_sce_mean_no_weight_ii',
    'test_sce_mean_no_weight_ii_3d', 'test_sce_mean_no_weight_ii_3d_log_prob',
    'test_sce_mean_no_weight_ii_4d', 'test_sce_mean_no_weight_ii_4d_log_prob',
    'test_sce_mean_no_weight_ii_log_prob', 'test_sce_mean_weight', 'test_sce_mean_weight_ii',
    'test_sce_mean_weight_ii_3d', 'test_sce_mean_weight_ii_3d_log_prob', 'test_sce_mean_weight_ii_4d',
    'test_sce_mean_weight_ii_4d_log_prob', 'test_sce_mean_weight_ii_log_prob',
    'test_sce_mean_weight_log_prob', 'test_sce_none', 'test_sce_none_log_prob', 'test_sce_none_weights',
    'test_sce_none_weights_log_prob', 'test_sce_sum', 'test_sce_sum_log_prob', 'test_shape',
    'test_shape_clip_end', 'test_shape_clip_start', 'test_shape_end_1', 'test_shape_end_negative_1',
    'test_shape_example', 'test_shape_start_1', 'test_shape_start_1_end_2',
    'test_shape_start_1_end_negative_1', 'test_shape_start_negative_1', 'test_sigmoid',
    'test_sigmoid_example', 'test_size', 'test_size_example', 'test_slice', 'test_slice_default_axes',
    'test_slice_default_steps', 'test_slice_end_out_of_bounds', 'test_slice_neg',
    'test_slice_neg_steps', 'test_slice_negative_axes', 'test_slice_start_out_of_bounds',
    'test_softmax_axis_0', 'test_softmax_axis_0_expanded', 'test_softmax_axis_1',
    'test_softmax_axis_1_expanded', 'test_softmax_axis_2', 'test_softmax_axis_2_expanded',
    'test_softmax_default_axis', 'test_softmax_default_axis_expanded', 'test_softmax_example',
    'test_softmax_example_expanded', 'test_softmax_large_number', 'test_softmax_large_number_expanded',
    'test_softmax_negative_axis', 'test_softmax_negative_axis_expanded', 'test_split_equal_parts_1d',
    'test_split_equal_parts_2d', 'test_split_equal_parts_default_axis', 'test_split_variable_parts_1d',
    'test_split_variable_parts_2d', 'test_split_variable_parts_default_axis',
    'test_split_zero_size_splits', 'test_sqrt', 'test_sqrt_example', 'test_squeeze',
    'test_squeeze_negative_axes', 'test_sub', 'test_sub_bcast', 'test_sub_example', 'test_sub_uint8',
    'test_sum_example', 'test_sum_one_input', 'test_sum_two_inputs', 'test_tanh', 'test_tanh_example',
    'test_training_dropout_zero_ratio', 'test_transpose_all_permutations_0',
    'test_transpose_all_permutations_1', 'test_transpose_all_permutations_2',
    'test_transpose_all_permutations_3', 'test_transpose_all_permutations_4',
    'test_transpose_all_permutations_5', 'test_transpose_default', 'test_unsqueeze_axis_0',
    'test_unsqueeze_axis_1', 'test_unsqueeze_axis_2', 'test_unsqueeze_axis_3',
    'test_unsqueeze_negative_axes', 'test_unsqueeze_three_axes', 'test_unsqueeze_two_axes',
    'test_unsqueeze_unsorted_axes', 'test_where_example', 'test_where_long_example', 'test_xor2d',
    'test_xor3d', 'test_xor4d', 'test_xor_bcast3v1d', 'test_xor_bcast3v2d', 'test_xor_bcast4v2d',
    'test_xor_bcast4v3d', 'test_xor_bcast4v4d',
  ],
  'pytorch-converted': [
    'test_AvgPool1d', 'test_AvgPool1d_stride', 'test_AvgPool2d', 'test_AvgPool2d_stride',
    'test_BatchNorm1d_3d_input_eval', 'test_BatchNorm2d_eval', 'test_BatchNorm2d_momentum_eval',
    'test_BatchNorm3d_eval', 'test_BatchNorm3d_momentum_eval', 'test_ConstantPad2d', 'test_Conv1d',
    'test_Conv1d_dilated', 'test_Conv1d_groups', 'test_Conv1d_pad1', 'test_Conv1d_pad1size1',
    'test_Conv1d_pad2', 'test_Conv1d_pad2size1', 'test_Conv1d_stride', 'test_Conv2d',
    'test_Conv2d_depthwise', 'test_Conv2d_depthwise_padded', 'test_Conv2d_depthwise_strided',
    'test_Conv2d_depthwise_with_multiplier', 'test_Conv2d_dilated', 'test_Conv2d_groups',
    'test_Conv2d_groups_thnn', 'test_Conv2d_no_bias', 'test_Conv2d_padding', 'test_Conv2d_strided',
    'test_Embedding', 'test_Embedding_sparse', 'test_GLU', 'test_GLU_dim', 'test_LeakyReLU',
    'test_LeakyReLU_with_negval', 'test_Linear', 'test_Linear_no_bias', 'test_LogSoftmax',
    'test_MaxPool1d', 'test_MaxPool1d_stride', 'test_MaxPool1d_stride_padding_dilation',
    'test_MaxPool2d', 'test_MaxPool2d_stride_padding_dilation', 'test_PixelShuffle',
    'test_PoissonNLLLLoss_no_reduce', 'test_ReLU', 'test_ReflectionPad2d', 'test_ReplicationPad2d',
    'test_Sigmoid', 'test_Softmax', 'test_Softmin', 'test_Softsign', 'test_Tanh', 'test_ZeroPad2d',
    'test_log_softmax_dim3', 'test_log_softmax_lastdim', 'test_softmax_functional_dim3',
    'test_softmax_lastdim',
  ],
  'pytorch-operator': [
    'test_operator_addmm', 'test_operator_basic', 'test_operator_chunk', 'test_operator_clip',
    'test_operator_concat2', 'test_operator_conv', 'test_operator_exp', 'test_operator_flatten',
    'test_operator_index', 'test_operator_max', 'test_operator_maxpool', 'test_operator_min',
    'test_operator_mm', 'test_operator_non_float_params', 'test_operator_pad', 'test_operator_params',
    'test_operator_permute2', 'test_operator_pow', 'test_operator_reduced_mean',
    'test_operator_reduced_mean_keepdim', 'test_operator_reduced_sum', 'test_operator_reduced_sum_keepdim',
    'test_operator_sqrt', 'test_operator_symbolic_override_nested', 'test_operator_view',
  ],
  'simple': [
    'test_expand_shape_model1', 'test_expand_shape_model2', 'test_expand_shape_model3',
    'test_expand_shape_model4', 'test_single_relu_model',
  ],
};

describe('ONNX backend conformance cases', () => {
  for (const c of Object.entries(CASES).flatMap(([dir, names]) => names.map((n) => join(dir, n)))) {
    it(c, async () => {
      const r = await runBackendCase(join(DATA, c), 1e-4);
      expect(r.message ?? '', c).toBe('');
      expect(r.status).toBe('pass');
      expect(r.maxRelError).toBeLessThan(1e-4);
    });
  }
});

describe('cases gpunet refuses', () => {
  it('a model of double tensors is refused in one line, not run in float32 (pytorch-operator/test_operator_add_broadcast)', async () => {
    const dir = join(DATA, 'pytorch-operator', 'test_operator_add_broadcast');
    const r = await runBackendCase(dir, 1e-4);
    expect(r.status).toBe('unsupported');
    expect(r.message).toBe(`${join(dir, 'model.onnx')}: input '0' is double: gpunet computes in float32 only (export the model in float32, e.g. model.float() in PyTorch)`);
  });
});
