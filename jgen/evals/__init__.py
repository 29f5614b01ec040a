"""Evaluations of generated samples: mode coverage now; FID/KID, precision/recall, PSNR later."""
