"""NeuHMR: test-time refinement of per-frame SMPL estimates of a monocular video guided by a pose-driven renderer.

Modules, one concept each: ``io`` (SMPL sequences and the monocular video), ``anchors`` (anchor frame selection),
``visibility`` (z-buffer joint visibility and joint feature registration), ``features`` (image features for joint
matching), ``motion_field`` (RBF motion field of residual rotations), ``losses`` (rgb, IoU, joint matching),
``renderer`` (the renderer interface and the differentiable splatting stand-in), ``nerf_renderer`` (a trained
animatable model of this plugin as the renderer), ``perturb`` (HMR-like initial estimates from ground truth),
``metrics`` (MPJPE / PVE), ``overlay`` (skeleton overlays) and ``refine`` (the optimisation).
"""
