@echo off
rem Installs or upgrades the Sobre agent on this machine: the
rem SobreAgent service, %ProgramFiles%\Sobre, %ProgramData%\Sobre.
rem Run as administrator (a GPO startup script and SCCM do), e.g.
rem   install.cmd COLLECTOR=mqtts://sobre.ville.fr:8883 CA_FILE=\\ville\netlogon\sobre-ca.pem ENROL_TOKEN=... GROUP=mairie
rem The properties go to `sobre-agent.exe service install` as they are
rem (quote one that holds & ^ or spaces: "SITE=Hotel de ville").
rem What it did is appended to %ProgramData%\Sobre\install.log (never the
rem properties: the enrolment token stays out of it). Its exit code is the
rem agent's: 0 installed, 5 not an administrator, anything else failed.
setlocal
net session >nul 2>&1
if errorlevel 1 (
  echo install.cmd: run this as administrator ^(an elevated prompt, a GPO startup script or SCCM^). 1>&2
  exit /b 5
)
set "LOGDIR=%ProgramData%\Sobre"
if not exist "%LOGDIR%" mkdir "%LOGDIR%"
set "OUT=%TEMP%\sobre-install-%RANDOM%%RANDOM%.txt"
>>"%LOGDIR%\install.log" echo ==== %DATE% %TIME% install.cmd on %COMPUTERNAME% from %~dp0
"%~dp0sobre-agent.exe" service install %* >"%OUT%" 2>&1
set "RC=%ERRORLEVEL%"
type "%OUT%"
type "%OUT%" >>"%LOGDIR%\install.log"
del "%OUT%" >nul 2>&1
>>"%LOGDIR%\install.log" echo ==== exit code %RC%
exit /b %RC%
