"""What the harness scores: ``privacy`` (PSNR, SSIM, LPIPS via ``lpips``, Hungarian
matching, label accuracy) and ``robustness`` (accuracy, attack success rate, detection
precision/recall per client role). Pure functions of tensors and histories: no suite,
store or task knowledge."""
