"""Entry point for `streamlit run dashboard/app.py -- --storage URL` (the app lives in apqopt.dashboard)."""

from apqopt.dashboard import main

main()
