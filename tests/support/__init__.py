"""Helpers shared by the tests (no tests here; pytest collects only ``test_*.py``).

- browser: headless Debian Chromium via Playwright, a static HTTP server, video probes.
- cases: Case records and store changes at minutes after T0 (case store, reports).
- edge_configs: the vtest.avi parking camera and its place, for edge processes.
- faults: the fault table (one row per fault test, printed after the run).
- factories: detections and alerts at seconds after T0 (``at``, ``dets``, ``alert``).
- fakes: stand-ins shared by several tests (``MemoryAlertSink``).
- fuzz_payloads: a seeded corpus of bad sensor messages, each with its reject reason.
- georeport_server: an in-process GeoReport v2 (Open311) server with faults on demand.
- kafka_helpers: ``Topic`` (collects a topic), a dispatch worker process, case compares.
- mjpeg_server: an in-process HTTP MJPEG camera looping JPEG frames at a rate.
- mqtt_tls: throw-away CA, server and client certificates made with ``openssl``.
- paths: the repository root and the real media (vtest.avi, bus.jpg) tests run on.
- polling: ``wait_until`` (sync) and ``until`` (async), the one bounded poll.
- postgres_server: a throw-away PostgreSQL from Debian's binaries (conftest's fixture).
- rtsp: ``RtspServer`` runs rtsp_server.py as a child process (conftest's fixtures).
- rtsp_server: a GStreamer RTSP server script, run by Debian's python3, not imported.
- scenes: test videos composed from real footage, for the scene and gating tests.
- secure_mosquitto: a mosquitto with login, TLS and persistence, restartable.
- wire: validating messages against the JSON Schemas in docs/schemas.
"""
