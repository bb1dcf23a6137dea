"""Where frames go after decode: the show window, the recorder, the virtual camera, the HUD."""
