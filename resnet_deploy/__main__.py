from resnet_deploy.cli import main

if __name__ == "__main__":
    main(prog_name="resnet-deploy")
