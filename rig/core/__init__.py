"""What everything uses: the clock, errors and blame, retries, measurements, the rig file, the asyncio loop thread, private temp folders."""
