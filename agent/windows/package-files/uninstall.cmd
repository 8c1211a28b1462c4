@echo off
rem Stops and removes the SobreAgent service and %ProgramFiles%\Sobre.
rem %ProgramData%\Sobre (reports not yet sent, the key, the logs) stays,
rem unless:  uninstall.cmd --purge
rem Run as administrator. Its exit code is the agent's (5: not an
rem administrator).
setlocal
net session >nul 2>&1
if errorlevel 1 (
  echo uninstall.cmd: run this as administrator. 1>&2
  exit /b 5
)
"%~dp0sobre-agent.exe" service uninstall %*
exit /b %ERRORLEVEL%
