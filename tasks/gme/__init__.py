"""GME recordings: when one is complete (`settle`) and how its audio is made (`steps`)."""
