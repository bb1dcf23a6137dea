"""Controllers that write into the control state: OSC, MIDI, audio."""
