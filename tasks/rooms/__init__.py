"""Rooms: a task's single-stream recordings (one per user) mixed on one clock, once every
one of them is finished (`settle`), into the room recording (`mix`)."""
